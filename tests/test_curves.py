"""The per-epoch curves: the mean over seeds that DVCLive records, and compare's reading of them."""

from __future__ import annotations

import pytest

from cifar10_tricks import curves
from cifar10_tricks.curves import mean_history
from cifar10_tricks.errors import UserError


def test_mean_history_averages_over_seeds():
    h = [
        [{"train/loss": 1.0, "train/acc": 0.5, "test/loss": 2.0, "test/acc": 0.4}],
        [{"train/loss": 3.0, "train/acc": 0.7, "test/loss": 4.0, "test/acc": 0.6}],
    ]
    assert mean_history(h) == [
        {"train/loss": 2.0, "train/acc": 0.6, "test/loss": 3.0, "test/acc": 0.5}
    ]


def test_write_live_is_what_read_seed_curves_reads_and_the_rows_summarise_it(tmp_path):
    """Two seeds, two epochs: each seed's test curves back; the mean, lowest and highest seed
    per epoch, accuracy in %."""
    h = {
        0: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 2.0, "test/acc": 0.2}] * 2,
        1: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 1.0, "test/acc": 0.4}] * 2,
    }
    curves.write_live(tmp_path / "live", h)
    seed_curves = curves.read_seed_curves(tmp_path / "live", [0, 1], "train@v-0-1")
    assert seed_curves == {
        "0": {"test_acc": [0.2, 0.2], "test_loss": [2.0, 2.0]},
        "1": {"test_acc": [0.4, 0.4], "test_loss": [1.0, 1.0]},
    }
    rows = curves.curve_rows({"v": list(seed_curves.values())})
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["test_acc"] == pytest.approx(30.0) and rows[0]["test_acc_min"] == 20.0
    assert rows[1]["test_loss_max"] == 2.0 and set(rows[0]) == set(curves.CURVE_FIELDS)


def test_a_torn_curve_names_the_stage(tmp_path):
    h = {s: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 1, "test/acc": 0.5}] for s in (0, 1)}
    curves.write_live(tmp_path / "live", h)
    torn = tmp_path / "live/plots/metrics/seed_1/test/acc.tsv"
    torn.write_text("step\tac")
    with pytest.raises(UserError, match=r"rerun `dvc repro -f train@baseline-0-1`"):
        curves.read_seed_curves(tmp_path / "live", [0, 1], "train@baseline-0-1")


def test_blocks_trained_for_different_epochs_are_refused():
    short = {"test_acc": [0.5], "test_loss": [1.0]}
    long = {"test_acc": [0.5, 0.6], "test_loss": [1.0, 0.9]}
    with pytest.raises(UserError, match="different lengths"):
        curves.curve_rows({"v": [short, long]})


def test_a_curve_file_past_its_cap_is_refused_before_it_is_read(tmp_path):
    h = {0: [{"train/loss": 1, "train/acc": 0.1, "test/loss": 1, "test/acc": 0.5}]}
    curves.write_live(tmp_path / "live", h)
    huge = tmp_path / "live/plots/metrics/seed_0/test/acc.tsv"
    with open(huge, "a") as f:
        f.truncate(curves.MAX_CURVE_BYTES + 1)
    with pytest.raises(UserError, match=r"more than a curve of 10,000 epochs.*repro -f train@v-0"):
        curves.read_seed_curves(tmp_path / "live", [0], "train@v-0")
