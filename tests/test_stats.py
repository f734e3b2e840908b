"""The stats stage against a NumPy float64 reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stages import cifar, stats


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
    with pytest.raises(stats.UserError):
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
    with pytest.raises(stats.UserError, match="dvc repro download"):
        stats.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "s.json")])


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os

    from stages.io import write_json

    write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize(
    "text",
    [
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2',
        '{"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}',
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}',
        '{"mean": "x", "std": null}',
        "[]",
    ],
)
def test_a_torn_or_hand_edited_stats_file_names_the_stage(tmp_path, text):
    (tmp_path / "stats.json").write_text(text)
    with pytest.raises(stats.UserError, match=r"rerun `dvc repro -f stats`"):
        stats.read(tmp_path / "stats.json")


def test_stats_read_back_what_was_written(tmp_path):
    stats.write(tmp_path / "s.json", [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], 10)
    assert stats.read(tmp_path / "s.json") == {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
