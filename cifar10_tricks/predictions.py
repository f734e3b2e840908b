"""The predictions file: each seed's final test predictions, written by `train`, read by `evaluate`.

One uncompressed ``.npz`` (no pickles): ``seeds`` (S,), ``y_true`` (N,), ``pred`` (S, N) the
predicted class and ``nll`` (S, N) the negative log-likelihood of the true class, per seed
and test image, in fp32 whatever precision trained the models; ``classes`` (str).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cifar10_tricks.classes import problem as classes_problem
from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import require, write_npz

FIELDS = ("seeds", "y_true", "pred", "nll", "classes")


def write(
    target: Path,
    seeds,
    y_true: np.ndarray,
    pred: np.ndarray,
    nll: np.ndarray,
    classes: tuple[str, ...],
) -> None:
    """Write the predictions file, atomically."""
    write_npz(
        target,
        seeds=np.asarray(seeds, dtype=np.int64),
        y_true=y_true.astype(np.int64),
        pred=pred.astype(np.int64),
        nll=nll.astype(np.float32),
        classes=np.array(classes, dtype=str),
    )


def read(path: Path, variant: str) -> dict[str, np.ndarray]:
    """The arrays of a predictions file of ``variant``, checked for shape."""
    require(path, f"train@{variant}")
    try:
        with np.load(path, allow_pickle=False) as z:
            p = {k: z[k] for k in FIELDS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path} is not a usable predictions file ({type(exc).__name__}: {exc}); "
            f"{rerun(f'train@{variant}', 'its train stage')}."
        ) from None
    way_out = rerun(f"train@{variant}")
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
        or min(p["y_true"].min(), p["pred"].min()) < 0
        or max(p["y_true"].max(), p["pred"].max()) >= len(classes)
        or not np.isfinite(p["nll"]).all()
    ):
        raise UserError(
            f"{path}: seeds, labels, predicted classes or losses are out of range; {way_out}."
        )
    return p
