"""Stage `evaluate@<variant>`: score each seed's model on the 10,000 test images.

Inputs:  the data file (`download`), the variant's models folder (`train@<variant>`).
Params:  ``train.device``.
Outputs (in ``--out``, i.e. results/<variant>/):
  metrics.json    micro-F1 (= accuracy), macro-F1 and test loss: mean and sample std over
                  seeds; the file `dvc metrics show/diff` reads.
  report.json     per seed: micro/macro-F1 and per-class precision, recall, F1 and
                  support (scikit-learn); the confusion matrix summed over seeds.
  confusion.csv   actual,predicted class of every test image for the first seed: DVC
                  confusion-plot data.

Models are evaluated in fp32 whatever precision trained them, so metrics compare alike.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from stages import cifar, params
from stages.model import load_checkpoint, predict
from stages.runtime import UserError, configure_torch, pick_device, run_main, write_csv, write_json

log = logging.getLogger("cifar10_tricks.evaluate")
CHECKPOINT = re.compile(r"^seed_(\d+)\.pt$")


def seed_checkpoints(models: Path) -> dict[int, Path]:
    """seed -> checkpoint path, for every seed_<s>.pt in ``models``."""
    if not models.is_dir():
        raise UserError(f"{models} does not exist; it is made by the train stage: run `dvc repro`.")
    found = {int(m.group(1)): p for p in models.iterdir() if (m := CHECKPOINT.match(p.name))}
    if not found:
        raise UserError(f"{models} holds no seed_<s>.pt models; rerun its train stage (`dvc repro -f`).")
    return dict(sorted(found.items()))


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    """One seed's scores; micro-F1 over single-label classes equals accuracy."""
    labels = list(range(len(classes)))
    report = classification_report(y_true, y_pred, labels=labels, target_names=list(classes),
                                   output_dict=True, zero_division=0)
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro")),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "per_class": {c: {k: float(v) for k, v in report[c].items()} for c in classes},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def summarise(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def evaluate_models(checkpoints: dict[int, Path], ds: cifar.Dataset, device: torch.device):
    """(metrics, report, first seed's predictions) for every seed's model."""
    x = torch.from_numpy(ds.x_test).permute(0, 3, 1, 2).to(device)
    y = torch.from_numpy(ds.y_test.astype(np.int64)).to(device)
    per_seed, losses, first_pred = {}, {}, None
    for seed, path in checkpoints.items():
        model, _ = load_checkpoint(path, device)
        if len(model.config.classes) and tuple(model.config.classes) != ds.classes:
            raise UserError(f"{path} was trained on classes {model.config.classes}, not this data's "
                            f"{ds.classes}; rerun `dvc repro`.")
        log_probs = predict(model.to(memory_format=torch.channels_last), x, "fp32")[0]
        losses[seed] = torch.nn.functional.nll_loss(log_probs, y).item()
        pred = log_probs.argmax(1).cpu().numpy()
        first_pred = pred if first_pred is None else first_pred
        per_seed[seed] = score(ds.y_test, pred, ds.classes)
        per_seed[seed]["test_loss"] = losses[seed]
    metrics = {}
    for key in ("micro_f1", "macro_f1", "test_loss"):
        mean, std = summarise([s[key] for s in per_seed.values()])
        metrics[key], metrics[f"{key}_std"] = mean, std
    metrics["seeds"] = len(per_seed)
    report = {
        "classes": list(ds.classes),
        "seeds": list(per_seed),
        "per_seed": {str(s): v for s, v in per_seed.items()},
        "confusion_sum": np.sum([s["confusion"] for s in per_seed.values()], axis=0).tolist(),
    }
    return metrics, report, first_pred


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="results folder of this variant")
    args = parser.parse_args(argv)

    tp = params.load(args.params).train
    device = pick_device(tp.device)
    configure_torch(device, tp.deterministic)
    ds = cifar.load(args.data)
    metrics, report, first_pred = evaluate_models(seed_checkpoints(args.models), ds, device)
    classes = ds.classes
    write_csv(args.out / "confusion.csv", ["actual", "predicted"],
              ((classes[a], classes[p]) for a, p in zip(ds.y_test, first_pred)))
    write_json(args.out / "report.json", report)
    write_json(args.out / "metrics.json", metrics)  # last: its presence means the rest is there
    log.info("%s: micro-F1 %.4f ± %.4f, macro-F1 %.4f ± %.4f over %d seeds", args.variant,
             metrics["micro_f1"], metrics["micro_f1_std"], metrics["macro_f1"],
             metrics["macro_f1_std"], metrics["seeds"])


if __name__ == "__main__":
    run_main(main)
