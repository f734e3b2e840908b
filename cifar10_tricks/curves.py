"""The per-epoch curves: DVCLive's folder, written by `train`, and its one reader (`evaluate`).

A train stage's ``--live`` folder holds, per epoch (DVCLive steps counted from 1), the train and
test loss and accuracy of every seed of its block (``plots/metrics/seed_<s>/{train,test}/
{loss,acc}.tsv``) and their mean over those seeds (``plots/metrics/{train,test}/...``).
:func:`read_seed_curves` reads each seed's test curves for `evaluate`, which puts them into
report.json; :func:`curve_rows` turns every variant's into compare/curves.csv's rows
(:data:`CURVE_FIELDS`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import refuse_linked_folders, require

METRICS = ("train/loss", "train/acc", "test/loss", "test/acc")


def mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch mean over seeds of each metric."""
    return [
        {k: float(np.mean([h[e][k] for h in histories])) for k in METRICS}
        for e in range(len(histories[0]))
    ]


def write_live(live_dir: Path, histories: dict[int, list[dict]]) -> None:
    """Per-epoch curves as DVCLive plot data: per seed, and the mean over seeds."""
    from dvclive import Live

    refuse_linked_folders(live_dir / "plots")  # DVCLive writes there, not through atomic_path
    # Only the plot files: Live.end() would add a summary metrics.json (a last-epoch
    # value per curve) that would crowd `dvc metrics show`; evaluate writes the metrics.
    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    series = {f"seed_{s}/": h for s, h in histories.items()}
    series[""] = mean_history(list(histories.values()))
    for prefix, history in series.items():
        for epoch, row in enumerate(history):
            live.step = epoch + 1  # epochs counted from 1, as in compare/curves.csv
            for key in METRICS:
                live.log_metric(prefix + key, row[key])


# One curve file: a line per epoch (at most 10,000) of about 30 bytes: 300 KB at the most.
MAX_CURVE_BYTES = 4 * 2**20


def _series(path: Path, metric: str, stage: str) -> list[float]:
    """One DVCLive curve (a value per epoch), checked; its size before it is read."""
    require(path, stage)
    try:
        if (size := path.stat().st_size) > MAX_CURVE_BYTES:
            raise ValueError(f"{size:,} bytes, more than a curve of 10,000 epochs")
        with open(path, newline="", encoding="utf-8") as f:
            values = [float(r[metric]) for r in csv.DictReader(f, delimiter="\t")]
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise UserError(
            f"{path} is not DVCLive's per-epoch {metric} ({type(exc).__name__}: {exc}); "
            f"{rerun(stage)}."
        ) from None
    if not values:
        raise UserError(f"{path} holds no epochs; {rerun(stage)}.")
    return values


def read_seed_curves(live_dir: Path, seeds: list[int], stage: str) -> dict[str, dict]:
    """Each seed's per-epoch test accuracy and loss from a ``--live`` folder that
    :func:`write_live` wrote (``stage`` made it): seed (a string, as JSON keys are) ->
    {"test_acc": [...], "test_loss": [...]}, one value per epoch.  `evaluate` carries them into
    report.json, so `compare` reads no DVC-cached file."""
    metrics = live_dir / "plots" / "metrics"
    curves = {
        str(s): {
            f"test_{m}": _series(metrics / f"seed_{s}" / "test" / f"{m}.tsv", m, stage)
            for m in ("acc", "loss")
        }
        for s in seeds
    }
    if len({len(c) for seed in curves.values() for c in seed.values()}) != 1:
        raise UserError(f"{metrics}: the seeds' curves have different lengths; {rerun(stage)}.")
    return curves


CURVE_FIELDS = (
    "variant",
    "epoch",
    "test_acc",
    "test_acc_min",
    "test_acc_max",
    "test_loss",
    "test_loss_min",
    "test_loss_max",
)


def curve_rows(curves: dict[str, list[dict]]) -> list[dict]:
    """compare/curves.csv's rows: per variant and epoch (counted from 1), test accuracy (%) and
    loss, the mean over seeds and the lowest and highest seed.  ``curves``: per variant, each
    seed's {"test_acc": [...], "test_loss": [...]} (:func:`read_seed_curves`'s values)."""
    rows = []
    for name, per_seed in curves.items():
        epochs = {len(c[f"test_{m}"]) for c in per_seed for m in ("acc", "loss")}
        if len(epochs) != 1:
            raise UserError(
                f"{name}: its seeds' curves have different lengths (blocks trained with "
                "different train.epochs?); rerun `dvc repro` so that every block is current."
            )
        for e in range(epochs.pop()):
            row = {"variant": name, "epoch": e + 1}
            for metric, scale in (("acc", 100.0), ("loss", 1.0)):
                at = np.array([c[f"test_{metric}"][e] for c in per_seed]) * scale
                row |= {
                    f"test_{metric}": round(float(at.mean()), 6),
                    f"test_{metric}_min": round(float(at.min()), 6),
                    f"test_{metric}_max": round(float(at.max()), 6),
                }
            rows.append(row)
    return rows
