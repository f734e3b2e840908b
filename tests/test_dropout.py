"""CPU dropout masks: exact Bernoulli draws, each seed's own in any stack and layout; bf16 too."""

from __future__ import annotations

import math

import torch

from cifar10_tricks.dropout import MaskStreams


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
