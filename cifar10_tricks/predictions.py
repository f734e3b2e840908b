"""The predictions file: each seed's final test predictions, written by `train`, read by `evaluate`.

One uncompressed ``.npz`` (no pickles): ``seeds`` (S,), ``y_true`` (N,), ``pred`` (S, N) the
predicted class and ``nll`` (S, N) the negative log-likelihood of the true class, per seed
and test image, in fp32 whatever precision trained the models; ``classes`` (str); ``made_by``
(str): the JSON of what made them (:mod:`cifar10_tricks.provenance`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cifar10_tricks import provenance
from cifar10_tricks.classes import MAX_CLASSES, MAX_LENGTH
from cifar10_tricks.classes import problem as classes_problem
from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import read_npz, write_npz
from cifar10_tricks.params import MAX_SEED, MAX_SEEDS

MAX_MADE_BY = 100_000  # characters: a few hundred in practice, a thousand seeds at the most
# Test images: a test batch holds at most cifar.MAX_BATCH_IMAGES (21,845; CIFAR-10's 10,000);
# not imported, so that evaluate does not depend on the archive reader (tested equal or more).
MAX_TEST_IMAGES = 21_845
_CELLS = MAX_SEEDS * MAX_TEST_IMAGES  # seeds x test images, at the most
# Each array: (dtype kinds, rank, most bytes), checked from its header before it is read.
LIMITS = {
    "seeds": ("iu", 1, MAX_SEEDS * 8),
    "y_true": ("iu", 1, MAX_TEST_IMAGES * 8),
    "pred": ("iu", 2, _CELLS * 8),
    "nll": ("f", 2, _CELLS * 8),
    "classes": ("U", 1, MAX_CLASSES * MAX_LENGTH * 4),
    "made_by": ("U", 0, MAX_MADE_BY * 4),
}


def write(
    target: Path,
    seeds,
    y_true: np.ndarray,
    pred: np.ndarray,
    nll: np.ndarray,
    classes: tuple[str, ...],
    made_by: dict,
) -> None:
    """Write the predictions file, atomically."""
    write_npz(
        target,
        seeds=np.asarray(seeds, dtype=np.int64),
        y_true=y_true.astype(np.int64),
        pred=pred.astype(np.int64),
        nll=nll.astype(np.float32),
        classes=np.array(classes, dtype=str),
        made_by=np.array(json.dumps(made_by, sort_keys=True), dtype=str),
    )


def read(path: Path, stage: str) -> dict[str, np.ndarray]:
    """The arrays of a predictions file that ``stage`` (train@<variant>-<seeds>) wrote, checked
    for shape."""
    p = read_npz(path, stage, LIMITS, "a usable predictions file")
    way_out = rerun(stage)
    n_seeds, n = len(p["seeds"]), len(p["y_true"])
    if p["pred"].shape != (n_seeds, n) or p["nll"].shape != (n_seeds, n) or n_seeds == 0 or n == 0:
        raise UserError(
            f"{path}: predictions of shape {p['pred'].shape} do not match {n_seeds} "
            f"seeds x {n} test images; {way_out}."
        )
    classes = p["classes"].tolist()
    problem = classes_problem(classes) if p["classes"].ndim == 1 else "classes are not a list"
    if problem:
        raise UserError(f"{path}: {problem}; {way_out}.")
    ints = all(np.issubdtype(p[k].dtype, np.integer) for k in ("seeds", "y_true", "pred"))
    if (
        not ints
        or not np.issubdtype(p["nll"].dtype, np.floating)
        or len(set(p["seeds"].tolist())) != n_seeds
        or not 0 <= p["seeds"].min() <= p["seeds"].max() <= MAX_SEED
        or min(p["y_true"].min(), p["pred"].min()) < 0
        or max(p["y_true"].max(), p["pred"].max()) >= len(classes)
        or not np.isfinite(p["nll"]).all()
    ):
        raise UserError(
            f"{path}: seeds, labels, predicted classes or losses are out of range; {way_out}."
        )
    p["made_by"] = _made_by(p["made_by"], path, way_out)
    return p


def _made_by(value: np.ndarray, path: Path, way_out: str) -> dict:
    """The file's record of what made it, checked for its keys."""
    try:
        if value.dtype.kind != "U" or value.ndim != 0 or len(str(value)) > MAX_MADE_BY:
            raise ValueError("not one line of JSON")
        made_by = json.loads(str(value))
        ok = isinstance(made_by, dict) and set(made_by) == provenance.KEYS
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        raise UserError(f"{path}: its record of what made it is unusable; {way_out}.")
    return made_by
