"""The stats stage against a NumPy float64 reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar10_tricks import cifar
from cifar10_tricks.errors import UserError
from stages import stats


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1234, 32, 32, 3), dtype=np.uint8)
    mean, std = stats.channel_stats(x, chunk=100)  # several chunks, a ragged last one
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)


def test_channels_are_not_mixed():
    x = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    x[..., 0], x[..., 2] = 255, np.arange(4, dtype=np.uint8)[:, None, None] * 50
    mean, std = stats.channel_stats(x)
    assert mean[0] == 1.0 and std[0] == 0.0 and mean[1] == 0.0
    assert mean[2] == pytest.approx(75 / 255)


def test_empty_input_is_an_error():
    with pytest.raises(UserError):
        stats.channel_stats(np.zeros((0, 32, 32, 3), dtype=np.uint8))


def test_stage_reads_train_split_only(tmp_path, small_archive):
    ds = cifar.parse_archive(small_archive)
    ds = cifar.Dataset(ds.x_train, ds.y_train, np.full_like(ds.x_test, 255), ds.y_test, ds.classes)
    cifar.save(ds, tmp_path / "d.npz")
    stats.main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "stats.json")])
    out = json.loads((tmp_path / "stats.json").read_text())
    ref = ds.x_train.astype(np.float64) / 255
    np.testing.assert_allclose(out["mean"], ref.mean(axis=(0, 1, 2)), atol=1e-12)
    assert out["n_images"] == len(ds.x_train)


def test_missing_data_file_names_the_stage(tmp_path):
    with pytest.raises(UserError, match="dvc repro download"):
        stats.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "s.json")])
