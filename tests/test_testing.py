import shutil
import subprocess
import sys
from pathlib import Path

from cifar10_tricks.testing import run_env


def test_the_python_dvc_runs_is_this_interpreter_with_its_packages():
    """DVC's stages run ``python`` from PATH: it must be this interpreter with this
    environment's packages (a virtualenv's included, where a symlink lost them)."""
    env = run_env()
    python = shutil.which("python", path=env["PATH"])
    out = subprocess.run(
        [python, "-c", "import sys, ruamel.yaml, cifar10_tricks; print(sys.prefix)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == sys.prefix
    # dvc is this environment's, activated or not.
    dvc = shutil.which("dvc", path=env["PATH"])
    assert dvc and Path(dvc).parent == Path(sys.executable).parent
    # Twice in a row reuses the script; it is a file, not a link.
    assert shutil.which("python", path=run_env()["PATH"]) == python
    assert not Path(python).is_symlink()
