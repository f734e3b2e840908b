"""Dropout masks that are each seed's own, whatever stack the seed trains in.

Two sources, each a function of (seed, layer, step) and the activation's place alone, never of
the other seeds in the stack, its size, the seed's position in it or the device's model:

- On the CPU, :class:`MaskStreams` draws each seed's masks from its own NumPy stream and
  :class:`ReluDropout` applies them to a ReLU's output in place, keeping no mask: the fast path
  there (`bench_dropout` times it against no dropout and the hashed masks).
- Everywhere else (CUDA, MPS), :func:`hashed_keep`: a counter-based hash of (seed, layer,
  step, element index) in six elementwise integer torch ops, from a table of each seed's keys
  per step hashed once (:func:`step_keys`) and the step counter a tensor on the device, so a
  CUDA graph replays it and its warm-up can be undone (`bench_dropout` times it).  The same ops
  run on the CPU, so the tests prove the property there on the path a GPU takes: a given seed
  gets the same hashed masks on every device (the CPU's streams are other masks, each seed's
  own too).
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


# --- counter-based masks (the path off the CPU) ----------------------------------------------

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 ``x`` in [0, 2**32) and a constant ``c`` < 2**32, with no
    int64 overflow (signed overflow is undefined behaviour in torch's kernels)."""
    return ((x & 0xFFFF) * c + (((x >> 16) * c) & 0xFFFF) * 65536) & _M32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


_M31 = 0x7FFFFFFF
LAYERS = 4  # dropout layers: conv1-3 (0-2) and fc1 (3)
DEFAULT_STEPS = 1 << 15  # steps a stack's key table holds unless the trainer plans more


def step_keys(seeds: tuple[int, ...], steps: int) -> torch.Tensor:
    """Each seed's two 31-bit keys per training step and dropout layer, (steps, LAYERS, 2, S)
    int64: [..., 0, s] is xored into seed s's hashed indices, [..., 1, s] (odd) multiplies them.
    Hashed once, on the CPU, from (seed, layer, step) alone: a stack's key table is its seeds'
    tables side by side, and a step reads its row with one indexing op."""
    seed = torch.tensor(seeds, dtype=torch.int64).view(1, 1, -1)
    step = torch.arange(steps, dtype=torch.int64).view(-1, 1, 1)
    layer = torch.arange(LAYERS, dtype=torch.int64).view(1, -1, 1)
    salt = _fmix32(((step & _M32) * 8 + layer + _DROPOUT_STREAM * 65536) & _M32)
    key = _fmix32(_fmix32(seed & _M32) ^ salt)  # (steps, LAYERS, S)
    xor = key & _M31
    mul = (_fmix32(key ^ 0x5BD1E995) & _M31) | 1
    return torch.stack([xor, mul], dim=2)


def hashed_keep(
    shape: tuple[int, ...],
    keys: torch.Tensor,
    p: float,
    cache: dict | None = None,
) -> torch.Tensor:
    """Which activations dropout keeps (bool, ``shape``), each with probability 1 - p (to
    2^-31), for the S seeds of a stack: ``shape`` is conv activations (B, S*C, H, W) or dense
    ones (S, B, F); ``keys`` (2, S), this step's and layer's row of :func:`step_keys`.

    An activation's draw mixes its seed's keys with the hash of its index among that seed's own
    activations (in (b, c, h, w) or (b, f) order, cached per shape: it never changes), so it is
    the same in any stack: x = index_hash ^ key; y = x * odd_key (under 2^62: no int64
    overflow); the draw is y's low 32-bit word xor its high one, which folds the product's high
    half into its low one (the low bits of a product alone depend only on the low bits of its
    factors; its middle bits made neighbours in hash space share their fate).  Four
    elementwise ops on the whole activation; the cached hash is int64, so none converts."""
    n = keys.shape[1]
    where = (shape, keys.device)
    spread = None if cache is None else cache.get(where)
    if spread is None:
        index = _element_index(shape, n, keys.device) & _M32
        spread = (_fmix32(_mul32(index, 0x9E3779B1)) & _M31).expand(shape).contiguous()
        if cache is not None:
            cache[where] = spread
    if len(shape) == 4:  # (B, S*C, H, W) as (B, S, C*H*W): seed s's block
        spread = spread.view(shape[0], n, -1)
        xor, mul = keys[0].view(1, n, 1), keys[1].view(1, n, 1)
    else:
        xor, mul = keys[0].view(n, 1, 1), keys[1].view(n, 1, 1)
    y = torch.bitwise_xor(spread, xor)
    y.mul_(mul)
    # The draw: the product's low 32-bit word xor its high one, read as int32 through a view of
    # the same bytes (little-endian: the low word first), signed, uniform on [-2^31, 2^31).
    words = y.view(torch.int32).unflatten(-1, (-1, 2))
    draw = torch.bitwise_xor(words[..., 0], words[..., 1])
    return (draw >= round(p * 2**32) - 2**31).view(shape)  # dropped: below p's share


def _element_index(shape: tuple[int, ...], n: int, device) -> torch.Tensor:
    """Each activation's index among its own seed's, broadcast to ``shape``."""
    if len(shape) == 4:
        b, sc, h, w = shape
        c = sc // n
        local_c = torch.arange(c, device=device).repeat(n).view(1, sc, 1, 1)
        rows = torch.arange(b, device=device).view(b, 1, 1, 1) * c + local_c
        return (rows * h + torch.arange(h, device=device).view(1, 1, h, 1)) * w + torch.arange(
            w, device=device
        ).view(1, 1, 1, w)
    _, b, f = shape
    return torch.arange(b, device=device).view(1, b, 1) * f + torch.arange(f, device=device).view(
        1, 1, f
    )
