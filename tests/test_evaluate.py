"""Evaluation: scores agree with scikit-learn's definitions, seeds aggregate correctly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stages import cifar, evaluate, params
from stages.model import ModelConfig, Net, save_checkpoint


def test_micro_f1_is_accuracy_and_per_class_is_complete():
    y_true = np.array([0, 1, 2, 2, 1, 0, 3, 3])
    y_pred = np.array([0, 2, 2, 2, 1, 1, 3, 0])
    s = evaluate.score(y_true, y_pred, tuple("abcd"))
    assert s["micro_f1"] == pytest.approx((y_true == y_pred).mean())
    assert set(s["per_class"]) == set("abcd")
    assert s["per_class"]["c"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1-score": 0.8, "support": 2})
    assert np.trace(s["confusion"]) == 5 and np.sum(s["confusion"]) == 8
    assert s["confusion"][1][2] == 1  # actual b predicted c


def test_summarise_is_mean_and_sample_std():
    assert evaluate.summarise([0.5, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    assert evaluate.summarise([0.4]) == (0.4, 0.0)


def test_stage_writes_metrics_report_and_confusion(tmp_path, small_archive):
    ds = cifar.parse_archive(small_archive)
    cifar.save(ds, tmp_path / "d.npz")
    models = tmp_path / "models"
    for seed in (3, 5):
        torch.manual_seed(seed)
        save_checkpoint(Net(ModelConfig(classes=ds.classes)), models / f"seed_{seed}.pt")
    (tmp_path / "params.yaml").write_text((params.Path(__file__).parents[1] / "params.yaml").read_text())
    out = tmp_path / "results" / "v"
    evaluate.main(["--variant", "v", "--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "d.npz"),
                   "--models", str(models), "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert metrics["seeds"] == 2 and report["seeds"] == [3, 5]
    per_seed = [report["per_seed"][s]["micro_f1"] for s in ("3", "5")]
    assert metrics["micro_f1"] == pytest.approx(np.mean(per_seed))
    assert metrics["micro_f1_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert np.sum(report["confusion_sum"]) == 2 * len(ds.y_test)
    lines = (out / "confusion.csv").read_text().splitlines()
    assert lines[0] == "actual,predicted" and len(lines) == len(ds.y_test) + 1
    assert lines[1].split(",")[0] == ds.classes[ds.y_test[0]]


def test_no_models_is_a_clear_error(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(evaluate.UserError, match="no seed_<s>.pt"):
        evaluate.seed_checkpoints(tmp_path / "m")
    with pytest.raises(evaluate.UserError, match="does not exist"):
        evaluate.seed_checkpoints(tmp_path / "missing")
