"""The CNN: its size, where each knob acts, and checkpoints that rebuild it."""

from __future__ import annotations

import math

import pytest
import torch

from stages.model import ModelConfig, Net, load_checkpoint, predict, save_checkpoint
from stages.runtime import UserError


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_parameter_count_is_the_tutorials():
    assert sum(p.numel() for p in Net(ModelConfig()).parameters()) == 122_570


def test_all_three_convs_are_used():
    """The blog's notebook never called conv3; here every parameter gets a gradient."""
    model = Net(ModelConfig())
    model(images()).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_output_is_log_softmax():
    out = Net(ModelConfig())(images())
    assert out.shape == (8, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(8))


def test_normalisation_is_applied():
    cfg = ModelConfig(normalize=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    model = Net(cfg)
    x = images()
    scaled = x.float() * model.scale + model.shift
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(scaled, (x.float() / 255 - mean) / std)
    plain = Net(ModelConfig(normalize=False, mean=cfg.mean, std=cfg.std))
    torch.testing.assert_close(x.float() * plain.scale + plain.shift, x.float() / 255)


def _dropout_calls(cfg, train=True):
    """(module, input shape, fraction of non-zero inputs it zeroed) for each dropout call."""
    model = Net(cfg).train(train)
    calls = []

    def hook(name):
        def record(module, args, out):
            alive = args[0] != 0
            calls.append((name, tuple(args[0].shape[1:]), ((out == 0) & alive).sum().item() / alive.sum().item()))
        return record

    model.drop_conv.register_forward_hook(hook("conv"))
    model.drop_dense.register_forward_hook(hook("dense"))
    torch.manual_seed(0)
    model(images(64))
    return calls


def test_dropout_sits_after_each_conv_and_after_fc1():
    calls = _dropout_calls(ModelConfig(dropout_conv=0.3, dropout_dense=0.6))
    assert [(n, s) for n, s, _ in calls] == [
        ("conv", (32, 30, 30)), ("conv", (64, 13, 13)), ("conv", (64, 4, 4)), ("dense", (64,))]
    for name, _, zeroed in calls:
        assert zeroed == pytest.approx(0.3 if name == "conv" else 0.6, abs=0.05)


def test_dropout_knobs_are_independent():
    only_dense = _dropout_calls(ModelConfig(dropout_dense=0.5))
    assert [z for n, _, z in only_dense if n == "conv"] == [0, 0, 0]
    assert [z for n, _, z in only_dense if n == "dense"][0] == pytest.approx(0.5, abs=0.1)
    only_conv = _dropout_calls(ModelConfig(dropout_conv=0.5))
    assert [z for n, _, z in only_conv if n == "dense"] == [0]


def test_dropout_inactive_in_eval_mode():
    calls = _dropout_calls(ModelConfig(dropout_conv=0.5, dropout_dense=0.5), train=False)
    assert [z for _, _, z in calls] == [0, 0, 0, 0]
    model = Net(ModelConfig(dropout_conv=0.5, dropout_dense=0.5)).eval()
    x = images()
    torch.testing.assert_close(model(x), model(x))


def test_kaiming_uniform_bound():
    torch.manual_seed(0)
    model = Net(ModelConfig(init="kaiming_uniform"))
    for layer in (model.conv1, model.conv2, model.conv3, model.fc1, model.fc2):
        fan_in = layer.weight[0].numel()
        bound = math.sqrt(6 / fan_in)
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.95 * bound  # uniform over the whole range, not PyTorch's default
    default = Net(ModelConfig())
    assert default.fc1.weight.abs().max() <= 1 / math.sqrt(1024) + 1e-7


def test_checkpoint_round_trip(tmp_path):
    model = Net(ModelConfig(normalize=True, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1), dropout_conv=0.2,
                            classes=("a",) * 10))
    save_checkpoint(model, tmp_path / "m.pt", seed=3)
    back, payload = load_checkpoint(tmp_path / "m.pt")
    assert back.config == model.config and payload["seed"] == 3
    x = images()
    torch.testing.assert_close(predict(back, x), predict(model, x))


def test_torn_checkpoint_is_a_clear_error(tmp_path):
    model = Net(ModelConfig())
    save_checkpoint(model, tmp_path / "m.pt")
    blob = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="not a usable checkpoint"):
        load_checkpoint(tmp_path / "m.pt")
