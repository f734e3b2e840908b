"""Saved models: a seed's weights and the config that rebuilds it; a torn file is a clear error."""

from __future__ import annotations

import pytest
import torch

from cifar10_tricks import checkpoint
from cifar10_tricks.errors import UserError
from cifar10_tricks.model import ModelConfig, Net, predict
from tests.conftest import images


def test_checkpoint_round_trip(tmp_path):
    stack = Net(
        ModelConfig(
            normalize=True,
            mean=(0.1, 0.2, 0.3),
            std=(0.3, 0.2, 0.1),
            dropout_conv=0.2,
            classes=("a",) * 10,
        ),
        (2, 3),
    )
    checkpoint.save(stack.single(1), tmp_path / "m.pt")
    back, payload = checkpoint.load(tmp_path / "m.pt")
    assert back.config == stack.config and payload["seed"] == 3 and back.seeds == (3,)
    x = images()
    torch.testing.assert_close(predict(back, x)[0], predict(stack, x)[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one seed at a time"):
        checkpoint.save(stack, tmp_path / "both.pt")


def test_torn_checkpoint_is_a_clear_error(tmp_path):
    model = Net(ModelConfig())
    checkpoint.save(model, tmp_path / "m.pt")
    blob = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="not a usable checkpoint"):
        checkpoint.load(tmp_path / "m.pt")


def test_the_same_model_gives_the_same_bytes_under_any_name(tmp_path):
    """No temporary file name or timestamp gets into a checkpoint: DVC sees an identical retrain
    as unchanged."""
    import zipfile

    model = Net(ModelConfig(), (5,))
    checkpoint.save(model, tmp_path / "a" / "seed_5.pt", variant="v", history=[{"lr": 0.1}])
    checkpoint.save(model, tmp_path / "b" / "other.pt", variant="v", history=[{"lr": 0.1}])
    first, second = (tmp_path / "a" / "seed_5.pt").read_bytes(), (tmp_path / "b" / "other.pt")
    assert first == second.read_bytes()
    names = zipfile.ZipFile(tmp_path / "a" / "seed_5.pt").namelist()
    assert all(n.startswith("archive/") for n in names), names
