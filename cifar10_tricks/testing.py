"""A copy of this project in a temporary git repository, on small synthetic data, for running
real `dvc` commands: the end-to-end tests run it and `bench_pipeline` times it."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "page",
    "stages",
    "cifar10_tricks",
    "params.yaml",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run_env() -> dict[str, str]:
    """The environment for a command that runs DVC here: git's identity, unbuffered output,
    and this interpreter first on PATH as ``python``, since DVC runs each stage's
    ``python -m stages.<name>`` through the shell (a machine whose ``python`` is another
    interpreter, or none, would run the stages without this project's packages).

    ``python`` is a two-line script that execs ``sys.executable`` by its own path, not a
    symlink to it: a virtualenv's interpreter started through a link outside the venv's
    folder finds no ``pyvenv.cfg`` and starts without the venv's packages.  The interpreter's
    own folder comes next, so ``dvc`` and the project's scripts are found there whether or not
    the virtualenv is activated (the README's commands, DVC's queue workers)."""
    exe = sys.executable
    tag = hashlib.sha256(exe.encode()).hexdigest()[:12]
    bin_dir = Path(tempfile.gettempdir()) / f"cifar10-tricks-python-{os.getuid()}-{tag}"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "python"
    script = f'#!/bin/sh\nexec {shlex.quote(exe)} "$@"\n'
    if wrapper.is_symlink() or not wrapper.is_file() or wrapper.read_text() != script:
        tmp = bin_dir / f".python.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)
    scripts = str(Path(exe).parent)  # not resolved: a venv's bin/, not the base interpreter's
    path = os.pathsep.join([str(bin_dir), scripts, os.environ.get("PATH", "")])
    return {**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1", "PATH": path}


class Project:
    def __init__(self, path: Path):
        self.path = path

    def run(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float = 1200
    ) -> subprocess.CompletedProcess:
        """Run a command in the project; ``capture=False`` sends its output to /dev/null (for a
        command whose daemons outlive it); no command runs past ``timeout`` seconds."""
        env = run_env()
        out = {} if capture else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.run(
            args, cwd=self.path, env=env, capture_output=capture, text=True, timeout=timeout, **out
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def dvc(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, **kw)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, raw: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)


def make_project(dest: Path, source: Path = ROOT, **data_overrides) -> Project:
    """Copy the project (or the checkout at ``source``) into ``dest``, point it at small
    synthetic data, commit it."""
    for name in COPIED:
        src, dst = source / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    proj = Project(dest)
    raw = proj.params()
    raw["data"]["source"] = "synthetic"
    raw["data"]["synthetic"].update({"n_train": 500, "n_test": 200, **data_overrides})
    proj.set_params(raw)
    proj.git("init", "-q", "-b", "main")
    proj.commit("project")
    return proj
