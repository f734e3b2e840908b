"""The CNN: its size, where each knob acts, seeds stacked in one model, dropout in its layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from cifar10_tricks.model import ModelConfig, Net, predict, stack_images
from tests.conftest import images


def test_parameter_count_is_the_tutorials():
    assert sum(p.numel() for p in Net(ModelConfig()).parameters()) == 122_570
    assert sum(p.numel() for p in Net(ModelConfig(), (0, 1, 2)).parameters()) == 3 * 122_570


def test_all_three_convs_are_used():
    """The blog's notebook never called conv3; here every parameter gets a gradient."""
    model = Net(ModelConfig())
    model(images()).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_output_is_log_softmax():
    out = Net(ModelConfig())(images())
    assert out.shape == (1, 8, 10)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(1, 8))


def test_normalisation_is_applied():
    cfg = ModelConfig(normalize=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    model = Net(cfg)
    x = images()
    scaled = x.float() * model.scale + model.shift
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(scaled, (x.float() / 255 - mean) / std)
    plain = Net(ModelConfig(normalize=False, mean=cfg.mean, std=cfg.std))
    torch.testing.assert_close(x.float() * plain.scale + plain.shift, x.float() / 255)


def _dropout_calls(cfg, train=True, seeds=(0,), masks="streams"):
    """(site, input shape, fraction of the ReLU's non-zero outputs it zeroed) per dropout site."""
    model = Net(cfg, seeds).train(train)
    model.cpu_masks = masks
    calls = []
    inner = model._activate_dropout

    def record(x, p, layer, pool=False):
        alive = F.relu(x) != 0
        out = inner(x.clone(), p, layer)  # unpooled; the pool comes after, as in the model
        site = "conv" if x.dim() == 4 else "dense"
        calls.append(
            (site, tuple(x.shape[1:]), ((out == 0) & alive).sum().item() / alive.sum().item())
        )
        return F.max_pool2d(out, 2) if pool else out

    model._activate_dropout = record
    model(images(64))
    return calls


@pytest.mark.parametrize("masks", ["streams", "hashed"])
def test_dropout_sits_after_each_conv_and_after_fc1(masks):
    calls = _dropout_calls(ModelConfig(dropout_conv=0.3, dropout_dense=0.6), masks=masks)
    assert [(n, s) for n, s, _ in calls] == [
        ("conv", (32, 30, 30)),
        ("conv", (64, 13, 13)),
        ("conv", (64, 4, 4)),
        ("dense", (64, 64)),
    ]
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


def test_cpu_dropout_scales_kept_values_and_its_gradient_is_relus_through_the_kept():
    """Kept activations are relu(x)/(1-p), pooled or not (scaling after the pool gives the
    same bits); the gradient flows exactly where the output is non-zero, scaled alike."""
    model = Net(ModelConfig(dropout_conv=0.25)).train()
    x0 = torch.randn(8, 32, 30, 30, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = model._activate_dropout(
        x0 * 1.0, 0.25, 0
    )  # x0 * 1.0: the layer works in place on its input
    kept = out != 0
    assert 0.6 < kept.float().sum().item() / (x0 > 0).sum().item() < 0.9
    torch.testing.assert_close(out[kept], F.relu(x0)[kept] * (1 / 0.75), rtol=0, atol=0)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(g)
    torch.testing.assert_close(x0.grad, torch.where(kept, g * (1 / 0.75), 0.0), rtol=0, atol=0)
    y = F.relu(torch.randn(8, 32, 30, 30, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(F.max_pool2d(y, 2) * (1 / 0.75), F.max_pool2d(y * (1 / 0.75), 2))


def test_default_init_is_pytorchs_own_for_the_tutorials_layers():
    """Seed s's default weights are bit for bit those of nn.Conv2d/nn.Linear made after
    torch.manual_seed(s): PyTorch's own default init, layer by layer."""
    from torch import nn

    for seed in (0, 5):
        torch.manual_seed(seed)
        ref = [
            nn.Conv2d(3, 32, 3),
            nn.Conv2d(32, 64, 3),
            nn.Conv2d(64, 64, 3),
            nn.Linear(1024, 64),
            nn.Linear(64, 10),
        ]
        ours = Net(ModelConfig(), (9, seed)).single(1)
        for mine, theirs in zip((ours.conv1, ours.conv2, ours.conv3, ours.fc1, ours.fc2), ref):
            assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)


def test_a_stack_is_its_seeds_side_by_side():
    """Seed s of a stack: the same initial weights and outputs as a model of seed s alone."""
    cfg = ModelConfig(
        normalize=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), init="kaiming_uniform"
    )
    stack = Net(cfg, (4, 7, 9))
    alone = Net(cfg, (7,))
    for name, p in alone.state_dict().items():
        assert torch.equal(stack.single(1).state_dict()[name], p), name
    x = images(32)
    torch.testing.assert_close(predict(stack, x)[1], predict(alone, x)[0], rtol=1e-5, atol=1e-5)
    per_seed = torch.stack([images(8, seed) for seed in (1, 2, 3)])  # each seed its own batch
    out = stack(stack_images(per_seed))
    for s in range(3):
        torch.testing.assert_close(out[s], stack.single(s)(per_seed[s])[0], rtol=1e-5, atol=1e-5)


def test_stacking_one_seed_is_a_view():
    x = images(8).contiguous(memory_format=torch.channels_last)
    stacked = stack_images(x.unsqueeze(0))
    assert stacked.data_ptr() == x.data_ptr() and torch.equal(stacked, x)


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
