"""The per-epoch curves: DVCLive's folder, written by `train`, and its one reader (`compare`).

A train stage's ``--live`` folder holds, per epoch (DVCLive steps counted from 1), the train and
test loss and accuracy of every seed (``plots/metrics/seed_<s>/{train,test}/{loss,acc}.tsv``)
and their mean over seeds (``plots/metrics/{train,test}/...``).  :func:`read_curves` gathers
every variant's per-seed test curves into compare/curves.csv's rows (:data:`CURVE_FIELDS`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import require

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


def _series(path: Path, metric: str, name: str) -> list[float]:
    """One DVCLive curve (a value per epoch), checked."""
    require(path, f"train@{name}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            values = [float(r[metric]) for r in csv.DictReader(f, delimiter="\t")]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{path} is not DVCLive's per-epoch {metric} ({type(exc).__name__}: {exc}); "
            f"{rerun(f'train@{name}')}."
        ) from None
    if not values:
        raise UserError(f"{path} holds no epochs; {rerun(f'train@{name}')}.")
    return values


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


def read_curves(results: Path, seeds: dict[str, list[int]]) -> list[dict]:
    """Per variant and epoch (counted from 1): test accuracy (%) and loss, the mean over seeds
    and the lowest and highest seed, from each seed's curves that :func:`write_live` wrote in
    ``results/<variant>/live``."""
    rows = []
    for name, variant_seeds in seeds.items():
        metrics = results / name / "live" / "plots" / "metrics"
        per_seed = {
            metric: [
                _series(metrics / f"seed_{s}" / "test" / f"{metric}.tsv", metric, name)
                for s in variant_seeds
            ]
            for metric in ("acc", "loss")
        }
        epochs = {len(c) for curves in per_seed.values() for c in curves}
        if len(epochs) != 1:
            raise UserError(
                f"{metrics}: the seeds' curves have different lengths; {rerun(f'train@{name}')}."
            )
        for e in range(epochs.pop()):
            row = {"variant": name, "epoch": e + 1}
            for metric, scale in (("acc", 100.0), ("loss", 1.0)):
                at = np.array([c[e] for c in per_seed[metric]]) * scale
                row |= {
                    f"test_{metric}": round(float(at.mean()), 6),
                    f"test_{metric}_min": round(float(at.min()), 6),
                    f"test_{metric}_max": round(float(at.max()), 6),
                }
            rows.append(row)
    return rows
