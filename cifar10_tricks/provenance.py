"""What made a result: the data, its sizes, the schedule, the device and its name, the precision,
the stack size and the versions, recorded by `train` and carried into every result file.

``made_by`` is a plain mapping of JSON values.  `train` writes it into the predictions file,
`evaluate` into metrics.json and report.json, `compare` into comparison.json and the first line of
comparison.md (:func:`describe`), which also says, in words, when the data is generated and when
the baseline is within a few points of chance.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

SYNTHETIC = "synthetic"  # data.source for the generated archive
# The keys of a made_by record (`train` writes them; the predictions file's reader checks them).
KEYS = frozenset(
    {
        "data",
        "epochs",
        "batch_size",
        "seeds",
        "device",
        "device_name",
        "precision",
        "seeds_per_step",
        "deterministic",
        "torch",
    }
)
NEAR_CHANCE = 0.05  # a baseline within 5 points of chance has barely learned


def file_md5(path: Path) -> str:
    """The md5 of a file, read in 1 MiB blocks (the data file is 180 MB for CIFAR-10)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` in /proc/cpuinfo ("model name", "flags"), or None (not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (lscpu's), else what Python knows."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def describe(made_by: dict) -> str:
    """One line for people: what data, how much, how trained, where, with what."""
    data = made_by["data"]
    seeds = made_by["seeds"]
    shown = ", ".join(map(str, seeds[:10])) + (
        f", … ({len(seeds)} in all)" if len(seeds) > 10 else ""
    )
    curves = (
        f"; the per-epoch curves in {made_by['precision']}, the scores in fp32"
        if made_by["precision"] != "fp32"
        else ""
    )
    return (
        f"Data: {data['source']} ({data['n_train']:,} train / {data['n_test']:,} test images, "
        f"data file md5 {data['md5']}); {made_by['epochs']} epoch(s), batch "
        f"{made_by['batch_size']}, seeds {shown}; {made_by['device']} ({made_by['device_name']}), "
        f"{made_by['precision']}, {made_by['seeds_per_step']} seed(s) per step"
        f"{curves}; torch {made_by['torch']}."
    )


def is_synthetic(made_by: dict) -> bool:
    return made_by["data"]["source"].split(":", 1)[0] == SYNTHETIC
