"""Evaluation: scores agree with scikit-learn's definitions, seeds aggregate correctly, and the
stage needs no torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar10_tricks import curves
from stages import evaluate
from tests.conftest import CLASSES, run_python, write_predictions


def _live(path, seeds=(3, 5)):
    """A DVCLive folder of two epochs for ``seeds``, as the train stage writes it."""
    row = {"train/loss": 1.0, "train/acc": 0.5, "test/loss": 0.9, "test/acc": 0.6}
    curves.write_live(path, {s: [row, {**row, "test/acc": 0.7}] for s in seeds})
    return path


def _args(tmp_path, out) -> list[str]:
    return [
        "--variant",
        "v",
        "--seeds",
        "3-5",
        "--predictions",
        str(tmp_path / "p.npz"),
        "--live",
        str(tmp_path / "live"),
        "--out",
        str(out),
    ]


def test_micro_f1_is_accuracy_and_per_class_is_complete():
    y_true = np.array([0, 1, 2, 2, 1, 0, 3, 3])
    y_pred = np.array([0, 2, 2, 2, 1, 1, 3, 0])
    s = evaluate.score(y_true, y_pred, tuple("abcd"))
    assert s["micro_f1"] == pytest.approx((y_true == y_pred).mean())
    assert set(s["per_class"]) == set("abcd")
    assert s["per_class"]["c"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1-score": 0.8, "support": 2}
    )
    assert np.trace(s["confusion"]) == 5 and np.sum(s["confusion"]) == 8
    assert s["confusion"][1][2] == 1  # actual b predicted c


def test_stage_writes_metrics_report_and_confusion(tmp_path):
    y, pred, nll = write_predictions(tmp_path / "p.npz")
    _live(tmp_path / "live")
    out = tmp_path / "results" / "v" / "3-5"
    evaluate.main(_args(tmp_path, out))
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert metrics["seeds"] == 2 and report["seeds"] == [3, 5]
    assert metrics["macro_f1_over"] == [evaluate.MACRO_OVER]  # the choice, stated
    per_seed = [report["per_seed"][s]["micro_f1"] for s in ("3", "5")]
    assert per_seed == pytest.approx([(p == y).mean() for p in pred])
    assert metrics["micro_f1"] == pytest.approx(np.mean(per_seed))
    assert metrics["micro_f1_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert metrics["loss"] == pytest.approx(nll.astype(np.float64).mean(1).mean())
    assert np.sum(report["confusion_sum"]) == 2 * len(y)
    # Each seed's test curves from the train stage's DVCLive folder: what compare draws.
    assert report["curves"]["5"] == {"test_acc": [0.6, 0.7], "test_loss": [0.9, 0.9]}
    # Square and summed over seeds: every pair of the 10 classes, zeros included.
    rows = [line.split(",") for line in (out / "confusion.csv").read_text().splitlines()]
    assert rows[0] == ["actual", "predicted", "count"] and len(rows) == 1 + 10 * 10
    counts = {(a, p): int(c) for a, p, c in rows[1:]}
    assert sum(counts.values()) == 2 * len(y)
    expected = sum(int(y[i] == 0 and pr[i] == 1) for pr in pred for i in range(len(y)))
    assert counts[(CLASSES[0], CLASSES[1])] == expected


def test_stage_imports_no_torch(tmp_path):
    """Scoring needs NumPy and scikit-learn only: no torch import, no CUDA context."""
    write_predictions(tmp_path / "p.npz")
    _live(tmp_path / "live")
    code = (
        "import sys; from stages import evaluate; "
        f"evaluate.main({_args(tmp_path, tmp_path / 'r')!r}); "
        "print('torch' in sys.modules)"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split()[-1] == "False" and (tmp_path / "r/metrics.json").is_file()


def test_macro_f1_averages_the_classes_that_occur_not_the_absent_ones():
    """With few test images some classes are absent: perfect predictions score macro-F1 1.0
    (it was 0.9, an absent class counted as F1 = 0), and a class predicted but absent from
    the labels still counts against it."""
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8])  # no image of class 9
    assert evaluate.score(y, y, CLASSES)["macro_f1"] == 1.0
    wrong = y.copy()
    wrong[0] = 9  # class 9 predicted once, never true: precision 0 for it
    assert evaluate.score(y, wrong, CLASSES)["macro_f1"] == pytest.approx((8 + 0 + 0) / 10)
