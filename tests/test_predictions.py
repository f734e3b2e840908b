"""The predictions file: read back as written, and refused, naming its train stage, when missing,
torn, of the wrong shape or hand-edited out of range."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar10_tricks import predictions
from cifar10_tricks.errors import UserError
from tests.conftest import CLASSES, MADE_BY, write_predictions


def test_read_gives_back_what_write_wrote(tmp_path):
    y, pred, nll = write_predictions(tmp_path / "p.npz")
    p = predictions.read(tmp_path / "p.npz", "train@v-0-1")
    assert p["seeds"].tolist() == [3, 5] and p["classes"].tolist() == list(CLASSES)
    assert np.array_equal(p["y_true"], y) and np.array_equal(p["pred"], pred)
    assert p["nll"].dtype == np.float32 and np.array_equal(p["nll"], nll)
    assert p["made_by"] == MADE_BY


def test_missing_or_torn_predictions_are_clear_errors(tmp_path):
    with pytest.raises(
        UserError, match=r"made by the `train@v-0-1` stage: run `dvc repro train@v-0"
    ):
        predictions.read(tmp_path / "missing.npz", "train@v-0-1")
    write_predictions(tmp_path / "p.npz")
    blob = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "p.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match=r"not a usable predictions file .*repro -f train@v-0-1`"):
        predictions.read(tmp_path / "p.npz", "train@v-0-1")
    predictions.write(
        tmp_path / "q.npz",
        (0, 1),
        np.zeros(5, int),
        np.zeros((1, 5), int),
        np.zeros((1, 5), np.float32),
        CLASSES,
        MADE_BY,
    )
    with pytest.raises(UserError, match=r"do not match 2 seeds x 5 test images"):
        predictions.read(tmp_path / "q.npz", "train@v-0-1")


@pytest.mark.parametrize(
    "edit, says",
    [
        ({"pred": np.full((2, 5), 10)}, "out of range"),
        ({"nll": np.full((2, 5), np.nan, np.float32)}, "out of range"),
        ({"seeds": np.array([1, 1])}, "out of range"),
        ({"classes": np.array(["a", "accuracy"] + list("cdefghij"))}, "report key"),
        ({"classes": np.array(["a", "a"] + list("cdefghij"))}, "given twice"),
        ({"made_by": np.array("[1, 2]")}, "record of what made it is unusable"),
        ({"made_by": np.array('{"epochs": 1}')}, "record of what made it is unusable"),
        ({"made_by": np.array("[" * 100_000)}, "record of what made it is unusable"),
        # the wrong rank: refused from the header, one clear error, not a traceback
        ({"seeds": np.array([[0], [1]])}, r"seeds is int64 of shape \(2, 1\)"),
        ({"seeds": np.array(0)}, r"seeds is int64 of shape \(\)"),
        ({"y_true": np.zeros((5, 2), np.int64)}, r"y_true is int64 of shape \(5, 2\)"),
        ({"nll": np.ones((2, 5), np.complex64)}, "nll is complex64"),
        ({"seeds": np.array([0, -1])}, "out of range"),
    ],
)
def test_hand_edited_predictions_are_refused(tmp_path, edit, says):
    fields = {
        "seeds": np.array([0, 1]),
        "y_true": np.zeros(5, np.int64),
        "pred": np.zeros((2, 5), np.int64),
        "nll": np.ones((2, 5), np.float32),
        "classes": np.array(CLASSES),
        "made_by": np.array(json.dumps(MADE_BY)),
    }
    np.savez(tmp_path / "p.npz", **{**fields, **edit})
    with pytest.raises(UserError, match=rf"{says}.*`dvc repro -f train@v-0-1`"):
        predictions.read(tmp_path / "p.npz", "train@v-0-1")
