"""The stats file (data/stats.json): the train-set channel mean and std, written by `stats`
and read by `train`: its one writer and its one reader."""

from __future__ import annotations

import math
from pathlib import Path

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import read_json, write_json

MAX_BYTES = 64 * 1024  # it holds six numbers and a count: about 200 bytes


def write(target: Path, mean: list[float], std: list[float], n_images: int) -> None:
    write_json(target, {"mean": mean, "std": std, "n_images": int(n_images), "scale": "[0, 1]"})


def read(path: Path) -> dict:
    """The stats file: ``mean`` and ``std``, three finite numbers each (std >= 0: a constant
    channel has std 0, and the model centres it and leaves it unscaled), checked."""
    stats = read_json(path, "stats", max_bytes=MAX_BYTES)
    try:
        mean, std = (tuple(float(v) for v in stats[k]) for k in ("mean", "std"))
        ok = len(mean) == len(std) == 3 and all(math.isfinite(v) for v in mean + std)
        ok = ok and min(std) >= 0
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{path} does not hold a mean and std of three channels; {rerun('stats')}.")
    return {"mean": mean, "std": std}
