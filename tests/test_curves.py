"""The per-epoch curves: the mean over seeds that DVCLive records, and compare's reading of them."""

from __future__ import annotations

import pytest

from cifar10_tricks import curves
from cifar10_tricks.curves import mean_history
from cifar10_tricks.errors import UserError
from tests.conftest import fake_results


def test_mean_history_averages_over_seeds():
    h = [
        [{"train/loss": 1.0, "train/acc": 0.5, "test/loss": 2.0, "test/acc": 0.4}],
        [{"train/loss": 3.0, "train/acc": 0.7, "test/loss": 4.0, "test/acc": 0.6}],
    ]
    assert mean_history(h) == [
        {"train/loss": 2.0, "train/acc": 0.6, "test/loss": 3.0, "test/acc": 0.5}
    ]


def test_write_live_is_what_read_curves_reads(tmp_path):
    """Two seeds, two epochs: the mean, lowest and highest seed per epoch, accuracy in %."""
    h = {
        0: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 2.0, "test/acc": 0.2}] * 2,
        1: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 1.0, "test/acc": 0.4}] * 2,
    }
    curves.write_live(tmp_path / "v" / "live", h)
    rows = curves.read_curves(tmp_path, {"v": [0, 1]})
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["test_acc"] == pytest.approx(30.0) and rows[0]["test_acc_min"] == 20.0
    assert rows[1]["test_loss_max"] == 2.0 and set(rows[0]) == set(curves.CURVE_FIELDS)


def test_a_torn_curve_names_the_stage(tmp_path):
    fake_results(tmp_path / "results", {"baseline": [0.5, 0.6]})
    torn = tmp_path / "results/baseline/live/plots/metrics/seed_1/test/acc.tsv"
    torn.write_text("step\tacc\n1\t0.")
    with pytest.raises(UserError, match=r"rerun `dvc repro -f train@baseline`"):
        curves.read_curves(tmp_path / "results", {"baseline": [0, 1]})
