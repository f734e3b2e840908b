"""Dropout on the CPU: exact Bernoulli masks from fast seeded generators, applied in place.

:class:`MaskStreams` draws each seed's masks from its own NumPy stream; :class:`ReluDropout`
is the autograd function that applies them to a ReLU's output in place and keeps no mask.
The model (:mod:`cifar10_tricks.model`) uses them on the CPU; elsewhere torch's ``F.dropout`` draws.
Measured by `bench_dropout` (one step: no dropout, these masks, torch's).
"""

from __future__ import annotations

import numpy as np
import torch


class MaskStreams:
    """Each seed's dropout masks from its own NumPy SFC64 stream, one byte per activation.

    torch's CPU dropout draws a Bernoulli per activation at about the cost of the rest of
    the step (`bench_dropout`).  Here an activation is kept if its byte < k, dropped if
    byte > k, and on a tie (1 in 256) kept with the remaining probability, from a further
    32-bit draw.  So each activation is kept with probability exactly 1 - p (to 2^-40;
    torch's own compares a 24-bit float), masks are independent between seeds, and a seed's
    masks are the same whatever else is stacked with it, on any core count.  The masks are
    drawn on the calling thread: worker threads contend with torch's own and measured slower.
    """

    def __init__(self, seeds: tuple[int, ...]):
        self.streams = [
            np.random.SFC64(np.random.SeedSequence([seed, _DROPOUT_STREAM])) for seed in seeds
        ]

    def drop_(self, y: torch.Tensor, p: float) -> torch.Tensor:
        """Zero each activation of the CPU tensor ``y`` with probability ``p``, in place.

        A 4-d ``y`` is conv activations (B, S*C, H, W), drawn in (B, H, W, C) order per seed
        (memory order in channels_last, the fast case; any layout gets the same masks); a
        3-d one is dense activations (S, B, F).  Kept values are left as they are: scaling
        by 1/(1-p) is the caller's.  float32, or bf16 under autocast (NumPy has no bf16: its
        bits are multiplied as int16 by 0 or 1, which zeroes or keeps the value alike).
        """
        n = len(self.streams)
        values = y.view(torch.int16) if y.dtype in (torch.bfloat16, torch.float16) else y
        if y.dim() == 4:
            nhwsc = values.permute(0, 2, 3, 1).unflatten(3, (n, -1)).numpy()
            per_seed = [nhwsc[:, :, :, s] for s in range(n)]
        else:
            per_seed = list(values.numpy())
        for stream, block in zip(self.streams, per_seed):
            _bernoulli_drop(stream, block, 1.0 - p)
        return y


_DROPOUT_STREAM = 0xD5  # tags a seed's dropout stream apart from any other use of the seed
CHUNK = 1 << 17  # activations drawn at a time: their bytes and mask stay in the core's L2 cache


def _bernoulli_drop(stream: np.random.SFC64, block: np.ndarray, keep: float) -> None:
    """Multiply each value of ``block`` (in place) by a Bernoulli(keep) draw (exact to 2^-40).

    In chunks of whole rows (images) of about CHUNK values, so the drawn bytes and the mask
    never leave the cache; the chunks depend only on the block's shape, so a seed's draws
    are the same in any stack.
    """
    if block.size == 0:
        return
    k, frac = divmod(keep * 256, 1.0)
    k, threshold = int(k), np.uint64(round(frac * 2**32))
    rows = max(1, CHUNK // block[0].size)
    for i in range(0, len(block), rows):
        chunk = block[i : i + rows]
        byte = stream.random_raw(-(-chunk.size // 8)).view(np.uint8)[: chunk.size]
        kept = np.less(byte, k)
        ties = np.flatnonzero(byte == k)
        if len(ties):
            kept[ties] = (stream.random_raw(len(ties)) >> np.uint64(32)) < threshold
        np.multiply(chunk, kept.reshape(chunk.shape), out=chunk)


class ReluDropout(torch.autograd.Function):
    """relu(x) with dropout's zeros (unscaled), in place in x; the backward reads the mask from it.

    ``y > 0`` exactly where x > 0 and the activation is kept, so the gradient is
    threshold_backward(grad, y): the same numbers as autograd's relu then a multiply by the
    mask, with neither the mask nor a second buffer kept.  x is a conv's or a dense layer's
    output, which their backward passes do not need.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, streams: MaskStreams, p: float) -> torch.Tensor:
        y = streams.drop_(x.relu_(), p)
        ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, y, 0), None, None
