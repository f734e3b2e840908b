"""Dropout masks, each seed's own in any stack: the CPU's streams (exact Bernoulli, any layout,
bf16 too) and the hashed masks every other device draws, run here on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from cifar10_tricks.dropout import MaskStreams, hashed_keep, step_keys


def _dropped(streams, x, p):
    y = x.clone()
    assert streams.drop_(y, p) is y
    return y


def test_cpu_masks_are_exact_bernoulli():
    """Each value kept as it is or zeroed; the kept share is 1-p within sampling error (1.8 M)."""
    for p in (0.2, 0.5, 0.9):
        x = torch.ones(64, 32, 30, 30).contiguous(memory_format=torch.channels_last)
        m = _dropped(MaskStreams((0,)), x, p)
        assert torch.unique(m).tolist() == [0.0, 1.0]
        kept = m.double().mean().item()
        sd = math.sqrt(p * (1 - p) / m.numel())
        assert abs(kept - (1 - p)) < 5 * sd, (p, kept)


def test_cpu_masks_differ_between_seeds_and_follow_their_seed():
    """A stack's seed blocks get different masks; a seed's masks are its own in any stack and
    any memory layout, and the same again for the same seed (deterministic)."""
    x = torch.ones(16, 3 * 32, 8, 8).contiguous(memory_format=torch.channels_last)
    stack = _dropped(MaskStreams((0, 1, 2)), x, 0.5).chunk(3, dim=1)
    assert not torch.equal(stack[0], stack[1]) and not torch.equal(stack[1], stack[2])
    alone = _dropped(
        MaskStreams((1,)), x[:, :32].contiguous(memory_format=torch.channels_last), 0.5
    )
    assert torch.equal(alone, stack[1])
    # NCHW memory
    assert torch.equal(_dropped(MaskStreams((1,)), x[:, :32].contiguous(), 0.5), alone)
    dense = _dropped(MaskStreams((0, 1)), torch.ones(2, 16, 64), 0.5)
    assert not torch.equal(dense[0], dense[1])
    assert torch.equal(_dropped(MaskStreams((1,)), torch.ones(1, 16, 64), 0.5)[0], dense[1])


def test_cpu_masks_work_on_bf16_activations_as_on_fp32():
    """Under bf16 autocast (native on AVX-512-BF16/AMX CPUs) the masks drop the same activations
    and keep the rest bit for bit."""
    x = torch.rand(4, 64, 8, 8) + 0.1
    fp32 = MaskStreams((3, 4)).drop_(x.clone(), 0.3)
    bf16 = MaskStreams((3, 4)).drop_(x.to(torch.bfloat16), 0.3)
    assert bf16.dtype == torch.bfloat16 and torch.equal(fp32 == 0, bf16 == 0)
    kept = bf16 != 0
    assert (
        torch.equal(bf16[kept], x.to(torch.bfloat16)[kept]) and 0.2 < 1 - kept.float().mean() < 0.4
    )


# --- the hashed masks: the path off the CPU -------------------------------------------------


def _keep(shape, seeds, layer=0, step=1, p=0.2):
    return hashed_keep(shape, step_keys(tuple(seeds), step + 1)[step, layer], p)


@pytest.mark.parametrize("shape", [(8, 32, 16, 16), (16, 64)])
def test_hashed_masks_are_a_seeds_own_in_any_stack(shape):
    """Seed 7's masks alone, second in a stack of 3 and first in a stack of 2 are identical:
    a function of (seed, layer, step, index), never of the stack, its size or the position."""
    conv = len(shape) == 4
    stacked = (shape[0], 3 * shape[1], *shape[2:]) if conv else (3, *shape)
    alone = _keep((shape[0], shape[1], *shape[2:]) if conv else (1, *shape), [7])
    second = _keep(stacked, [1, 7, 3])
    first = _keep((shape[0], 2 * shape[1], *shape[2:]) if conv else (2, *shape), [7, 1])
    c = shape[1]
    cut = (lambda m, s: m[:, s * c : (s + 1) * c]) if conv else (lambda m, s: m[s : s + 1])
    assert torch.equal(cut(second, 1), alone) and torch.equal(cut(first, 0), alone)
    assert not torch.equal(cut(second, 0), alone)  # other seeds draw other masks


def test_hashed_masks_change_with_layer_and_step_and_keep_one_minus_p():
    base = _keep((64, 32, 32, 32), [0])
    assert not torch.equal(base, _keep((64, 32, 32, 32), [0], layer=1))
    assert not torch.equal(base, _keep((64, 32, 32, 32), [0], step=2))
    for p in (0.2, 0.5):
        kept = _keep((64, 32, 32, 32), [3], p=p).double().mean().item()
        assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / base.numel())


def test_hashed_masks_use_no_generator():
    """No draw from torch's generators: the masks do not depend on what else consumed them."""
    torch.manual_seed(0)
    a = _keep((4, 8, 8, 8), [5])
    torch.rand(1000)
    b = _keep((4, 8, 8, 8), [5])
    assert torch.equal(a, b) and torch.initial_seed() == 0


def test_hashed_masks_are_independent_between_steps_and_neighbours():
    """Each activation is kept with probability 1 - p, and the masks of two steps, of two
    layers and of neighbouring activations agree no more than independent draws would: the
    share kept in both is (1 - p)^2 within 5 standard errors."""
    shape, p = (64, 32, 16, 16), 0.2
    keys = step_keys((3,), 4)
    masks = [hashed_keep(shape, keys[step, 0], p) for step in (1, 2, 3)]
    n = masks[0].numel()
    both = (1 - p) ** 2
    tolerance = 5 * math.sqrt(both * (1 - both) / n)
    for a, b in ((masks[0], masks[1]), (masks[1], masks[2])):
        assert abs((a & b).double().mean().item() - both) < tolerance
    other_layer = hashed_keep(shape, keys[1, 1], p)
    assert abs((masks[0] & other_layer).double().mean().item() - both) < tolerance
    flat = masks[0].flatten()
    for lag in (1, 2, 32, 256, 1 << 14):  # neighbours in every index direction
        assert abs((flat[:-lag] & flat[lag:]).double().mean().item() - both) < tolerance * 1.5


# Ops that only re-describe a tensor's memory: no kernel runs for them.
VIEWS = {
    "aten::view",
    "aten::select",
    "aten::slice",
    "aten::expand",
    "aten::as_strided",
    "aten::reshape",
    "aten::unsqueeze",
    "aten::transpose",
    "aten::permute",
    "aten::_unsafe_view",
    "aten::detach",
    "aten::unflatten",
}


def test_a_dropout_layer_costs_at_most_8_ops_per_step_on_the_hashed_path():
    """Counted with torch's profiler on a forward pass of the hashed path: the ops a step with
    dropout after every layer adds to one without, per dropout layer (the masks, applying them,
    this step's keys and its counter), at most 8: six elementwise integer ops for the mask."""
    from cifar10_tricks.model import ModelConfig, Net

    def ops(config) -> int:
        model = Net(config, (0, 1))
        model.cpu_masks = "hashed"
        x = torch.randint(0, 256, (4, 6, 32, 32), dtype=torch.uint8)
        model(x)  # the first step builds the key table and the cached indices
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(x)
        top = [
            e.name for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None
        ]
        return len([name for name in top if name not in VIEWS])

    plain = ops(ModelConfig())
    dropped = ops(ModelConfig(dropout_conv=0.2, dropout_dense=0.2))
    assert 0 < (dropped - plain) / 4 <= 8, (plain, dropped)
