"""The stats file: read back as written; torn or hand-edited, it names the stage that makes it."""

from __future__ import annotations

import pytest

from cifar10_tricks import stats_file
from cifar10_tricks.errors import UserError


@pytest.mark.parametrize(
    "text",
    [
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2',
        '{"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}',
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, -0.1, 0.2]}',
        '{"mean": "x", "std": null}',
        "[]",
    ],
)
def test_a_torn_or_hand_edited_stats_file_names_the_stage(tmp_path, text):
    (tmp_path / "stats.json").write_text(text)
    with pytest.raises(UserError, match=r"rerun `dvc repro -f stats`"):
        stats_file.read(tmp_path / "stats.json")


def test_stats_read_back_what_was_written(tmp_path):
    stats_file.write(tmp_path / "s.json", [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], 10)
    assert stats_file.read(tmp_path / "s.json") == {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}


def test_a_constant_channel_is_legal_and_trains(tmp_path):
    """A data set with one constant channel (std 0) was refused with advice to rerun `stats`,
    which wrote the same file again: a loop.  It is legal; the model centres the channel and
    leaves it unscaled, so its inputs stay finite."""
    import torch

    from cifar10_tricks.model import ModelConfig, Net

    stats_file.write(tmp_path / "s.json", [0.5, 0.2, 0.3], [0.4, 0.0, 0.6], 10)
    stats = stats_file.read(tmp_path / "s.json")
    assert stats["std"] == (0.4, 0.0, 0.6)
    net = Net(ModelConfig(normalize=True, mean=stats["mean"], std=stats["std"]))
    x = torch.full((2, 3, 32, 32), 51, dtype=torch.uint8)  # 51 / 255 = 0.2, the green mean
    assert torch.isfinite(net(x)).all()
    green = x[:, 1:2].float() * net.scale[1] + net.shift[1]
    assert torch.allclose(green, torch.zeros(1), atol=1e-6)
