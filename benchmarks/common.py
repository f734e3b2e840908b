"""What every benchmark shares: the machine it ran on, the commit it measured, the report writer,
and the synthetic data set of CIFAR-10's real size."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cifar10_tricks.provenance import cpu_name

ROOT = Path(__file__).resolve().parents[1]
# The line every stage logs when it succeeds (cifar10_tricks.cli.run_main): its work after imports.
_DONE = re.compile(r"^(\w+) done in ([\d.]+) s$", re.M)


def parse_done(text: str) -> tuple[str, float] | None:
    """(stage, seconds) of the first ``<stage> done in X s`` line in ``text``, or None."""
    m = _DONE.search(text)
    return (m.group(1), float(m.group(2))) if m else None


def machine() -> dict:
    """The machine a figure belongs to: CPU, cores, GPU (if any), torch, Python."""
    info = {
        "cpu": cpu_name(),  # the name every result file records too
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
    }
    import torch

    info["torch"] = torch.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def commit() -> dict:
    """The git commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        try:  # a machine without git (a lent GPU's image) still gets its report
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def write_report(path: str | Path, report: dict) -> dict:
    """Write ``report`` as JSON at ``path``, keyed by the commit and the machine it measured,
    with the command that made it; returns what was written."""
    full = {
        **commit(),
        "machine": machine(),
        "command": " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        **report,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full, indent=2) + "\n")
    return full


def synthetic_data(path: Path, n_train: int, n_test: int, noise: float = 120.0):
    """The synthetic data set at ``path`` (a data file), generated there first if absent or
    not a data file of this version (one an older checkout left in bench-out/)."""
    import dataclasses

    from cifar10_tricks import cifar
    from cifar10_tricks.errors import UserError

    if path.exists():
        try:
            return cifar.load(path)
        except UserError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        archive = cifar.write_synthetic_archive(
            Path(tmp) / "a.tar.gz", n_train, n_test, seed=0, noise=noise
        )
        source = f"synthetic: generated images (seed 0, noise {noise:g})"
        cifar.save(dataclasses.replace(cifar.parse_archive(archive), source=source), path)
    return cifar.load(path)
