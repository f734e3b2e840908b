"""Stage `evaluate@<variant>-<seeds>`: score each seed's predictions on the test images.

Inputs:  from `train@<variant>-<seeds>`, in runs/<variant>/<seeds>/: ``--predictions``, every
         seed's fp32 prediction and NLL of each test image, the true labels and class names;
         ``--live``, its DVCLive folder, for each seed's per-epoch test curves.
Outputs (in ``--out``, i.e. results/<variant>/<seeds>/), all in git, so that `compare` reads
no DVC-cached file and runs in a clone that never pulled (``dvc exp run --pull
--allow-missing``):
  metrics.json    `micro_f1` (= accuracy), `macro_f1` (over the classes in the test labels or
                  the predictions, scikit-learn's default: `macro_f1_over` says so) and `loss`
                  (test NLL): the mean over the block's seeds, `<key>_sd` the sample sd, and
                  `seeds`; what `dvc metrics show/diff` read (short keys, so a row fits 120
                  columns; compare/summary.json has each variant's mean over all its blocks);
                  `made_by`, what made them (data, sizes, epochs, device, precision,
                  versions), as a one-item list, which DVC's tables leave out.
  report.json     per seed: micro/macro-F1 and per-class precision, recall, F1 and support
                  (scikit-learn) and the per-epoch test curves; the confusion matrix summed
                  over seeds (:mod:`cifar10_tricks.scores`, which `compare` reads it with).
  confusion.csv   actual,predicted,count: the confusion matrix summed over the block's seeds,
                  one row per pair of classes (zeros included, so every matrix is square and
                  alike): DVC plot data (template .dvc/plots/confusion_counts.json).

The train stage predicts the test set after every epoch anyway, so it writes its final
predictions (in fp32, whatever precision trained the models, so metrics compare alike) and
this stage scores them with NumPy and scikit-learn alone: no torch import, no device, no
model to load.  The models themselves stay in models/<variant>/<seeds>/ for anyone to reuse.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from cifar10_tricks import curves, predictions, scores
from cifar10_tricks.cli import run_main
from cifar10_tricks.files import atomic_group, write_csv, write_json
from cifar10_tricks.inference import mean_sd

log = logging.getLogger("cifar10_tricks.evaluate")
MACRO_OVER = "the classes in the test labels or the predictions (scikit-learn's default)"


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    """One seed's scores; micro-F1 over single-label classes equals accuracy."""
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=list(classes), output_dict=True, zero_division=0
    )
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro")),
        # Over the classes in the test labels or the predictions (scikit-learn's default): a
        # class with no test image that nobody predicted has no F1 to average, not an F1 of 0.
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class": {c: {k: float(v) for k, v in report[c].items()} for c in classes},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def evaluate_predictions(
    p: dict[str, np.ndarray], seed_curves: dict[str, dict] | None = None
) -> tuple[dict, dict]:
    """(metrics, report) over every seed's predictions; ``seed_curves`` (seed as a string ->
    its per-epoch test curves) go into the report as they are."""
    classes = tuple(p["classes"].tolist())
    per_seed = {}
    for seed, pred, nll in zip(p["seeds"].tolist(), p["pred"], p["nll"]):
        per_seed[seed] = score(p["y_true"], pred, classes)
        per_seed[seed]["loss"] = float(nll.astype(np.float64).mean())
    metrics = {}
    for key in ("micro_f1", "macro_f1", "loss"):
        mean, std = mean_sd([s[key] for s in per_seed.values()])
        metrics[key], metrics[f"{key}_sd"] = mean, std
    metrics["seeds"] = len(per_seed)
    # One-item lists, which DVC's tables leave out: `dvc metrics show` keeps a row of scores.
    metrics["macro_f1_over"] = [MACRO_OVER]
    metrics["made_by"] = [p["made_by"]]
    report = {
        "classes": list(classes),
        "seeds": list(per_seed),
        "per_seed": {str(s): v for s, v in per_seed.items()},
        "confusion_sum": np.sum([s["confusion"] for s in per_seed.values()], axis=0).tolist(),
        "curves": seed_curves or {},
        "made_by": p["made_by"],
    }
    return metrics, report


def confusion_rows(matrix: list[list[int]], classes: list[str]) -> list[tuple[str, str, int]]:
    """(actual, predicted, count) for every pair of classes, in class order."""
    return [
        (classes[a], classes[p], int(matrix[a][p]))
        for a in range(len(classes))
        for p in range(len(classes))
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--variant", required=True, help="the variant whose block is scored")
    parser.add_argument("--seeds", required=True, help="the block of seeds (0-9, 7)")
    parser.add_argument(
        "--predictions", type=Path, required=True, help="the train stage's predictions.npz"
    )
    parser.add_argument("--live", type=Path, required=True, help="the train stage's DVCLive folder")
    parser.add_argument("--out", type=Path, required=True, help="results folder of this block")
    args = parser.parse_args(argv)

    stage = f"train@{args.variant}-{args.seeds}"
    p = predictions.read(args.predictions, stage)
    seed_curves = curves.read_seed_curves(args.live, p["seeds"].tolist(), stage)
    metrics, report = evaluate_predictions(p, seed_curves)
    classes = report["classes"]
    with atomic_group():  # the three files are replaced together, or none is
        write_csv(
            args.out / "confusion.csv",
            ["actual", "predicted", "count"],
            confusion_rows(report["confusion_sum"], classes),
        )
        scores.write(args.out / "report.json", report)
        write_json(args.out / "metrics.json", metrics)
    log.info(
        "%s seeds %s: micro-F1 %.4f ± %.4f, macro-F1 %.4f ± %.4f over %d seeds",
        args.variant,
        args.seeds,
        metrics["micro_f1"],
        metrics["micro_f1_sd"],
        metrics["macro_f1"],
        metrics["macro_f1_sd"],
        metrics["seeds"],
    )


if __name__ == "__main__":
    run_main(main)
