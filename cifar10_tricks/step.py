"""One training step of S stacked seeds, :func:`train_step`, and its replay from a CUDA graph.

The train stage's loop (``stages.train.train_seeds``) calls :func:`train_step` by name, or on
CUDA the stack's :class:`GraphedStep`, that same function captured and replayed.  Benchmarks
build their stacks with :func:`fresh_stack` and call ``Stack.step``, the same dispatch, so
what they time is what `dvc repro` runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from cifar10_tricks import cifar, params
from cifar10_tricks.device import memory_format, seed_everything
from cifar10_tricks.model import ModelConfig, Net, stack_images
from cifar10_tricks.optim import SGD, Adam, make_optimizer


@dataclass(frozen=True)
class Tensors:
    """The data set on the device: uint8 images in channels_last NCHW, int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def to_device(ds: cifar.Dataset, device: torch.device) -> Tensors:
    # NHWC arrays viewed as NCHW are already channels_last in memory: no copy on the CPU.
    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).to(device)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64)).to(device)

    return Tensors(images(ds.x_train), labels(ds.y_train), images(ds.x_test), labels(ds.y_test))


def loss_fn(
    model: Net, log_probs: torch.Tensor, y: torch.Tensor, l1: float, kind: str = "cross_entropy"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to minimise, each seed's mean NLL (S,)) for log-probs (S, B, C), labels (S, B).

    ``kind``: cross_entropy, each seed's mean NLL; or mse, each seed's mean over its images of
    the squared distance between the softmax and the one-hot label (the Brier score).  The
    loss sums the seeds' losses, so each seed's gradient is its own alone.  PyTorch has no
    built-in L1, so it is added here (a sum over every seed's weights: each seed's gradient
    again its own).  The NLL is returned whatever ``kind``: the curves report it for all.
    """
    n, b, c = log_probs.shape
    nll = (
        F.nll_loss(log_probs.float().reshape(n * b, c), y.reshape(-1), reduction="none")
        .view(n, b)
        .mean(1)
    )
    if kind == "mse":
        probs = log_probs.float().exp()
        loss = (probs - F.one_hot(y, c).to(probs.dtype)).square().sum(-1).mean(1).sum()
    else:
        loss = nll.sum()
    if l1 == 0:
        return loss, nll
    return loss + l1 * sum(w.abs().sum() for w in model.weights()), nll


def train_step(
    stack: Stack, idx: torch.Tensor, regularize: bool = True, set_to_none: bool = True
) -> None:
    """One optimizer step of every seed of ``stack`` on its training images ``idx`` (S, B),
    adding each seed's (NLL sum, correct count) into ``stack.sums`` (S, 2).  ``regularize``:
    whether L2 and L1 apply at this step (from the variant's ``regularize_from`` epoch on)."""
    model, data, variant = stack.model, stack.data, stack.variant
    nhwc = data.x_train.permute(0, 2, 3, 1)  # the images as stored: (N, 32, 32, 3)
    xb = stack_images(nhwc[idx].permute(0, 1, 4, 2, 3))
    yb = data.y_train[idx]
    bf16 = stack.precision == "bf16"
    with torch.autocast(data.x_train.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(xb)
    loss, nll = loss_fn(model, out, yb, variant.l1 if regularize else 0.0, variant.loss)
    stack.opt.zero_grad(set_to_none=set_to_none)
    loss.backward()
    stack.opt.step(regularize)
    # Running sums on the device: no host sync per batch (it stalls a GPU).
    stack.sums[:, 0] += nll.detach() * idx.shape[1]
    stack.sums[:, 1] += (out.argmax(-1) == yb).sum(1)


class GraphedStep:
    """:func:`train_step` of one stack, captured in a CUDA graph once per batch shape (and per
    ``regularize``, which changes the update) and replayed.

    At batch 64 this model's kernels take microseconds; launching them one by one from
    Python costs more than running them.  A graph replays the whole step (indexing,
    forward, backward, the optimizer) in one launch.  Capture needs a few warm-up steps, so
    the parameters, the model's buffers (the dropout step counter), the optimizer's state and
    the running sums are saved before and restored after: training goes on exactly from where
    it was, and draws the same masks, as the eager step would.
    """

    def __init__(self, stack: Stack, n_warmup: int = 3):
        self.stack, self.n_warmup = stack, n_warmup
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def _capture(self, idx: torch.Tensor, regularize: bool):
        static_idx = idx.clone()
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.n_warmup):
                train_step(self.stack, static_idx, regularize)
        torch.cuda.current_stream().wait_stream(side)
        self.stack.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            train_step(self.stack, static_idx, regularize, set_to_none=False)
        self._restore(saved)
        return graph, static_idx

    def _tensors(self) -> list[torch.Tensor]:
        """What a step changes in the model: its weights, and its buffers (the dropout masks'
        step counter among them, so the warm-up's steps draw no masks of the real ones)."""
        model = self.stack.model
        return [*model.parameters(), *model.buffers()]

    def _snapshot(self):
        state = {p: {k: v.clone() for k, v in st.items()} for p, st in self.stack.opt.state.items()}
        return [t.detach().clone() for t in self._tensors()], state, self.stack.sums.clone()

    def _restore(self, saved) -> None:
        """Copy back in place: the graph holds these tensors' addresses."""
        tensors, state, sums = saved
        with torch.no_grad():
            for t, s in zip(self._tensors(), tensors):
                t.copy_(s)
            for p, st in self.stack.opt.state.items():  # made with the optimizer: every key there
                for k, v in st.items():
                    v.copy_(state[p][k])
            self.stack.sums.copy_(sums)

    def __call__(self, idx: torch.Tensor, regularize: bool = True) -> None:
        key = (tuple(idx.shape), regularize)
        if key not in self.graphs:
            self.graphs[key] = self._capture(idx, regularize)
        graph, static_idx = self.graphs[key]
        static_idx.copy_(idx)
        graph.replay()


@dataclass
class Stack:
    """Fresh models for S seeds trained as one, with everything :func:`train_step` reads: the
    optimizer, the data, the running sums ``sums`` (S, 2) of each seed's (NLL sum, correct
    count), the precision and the variant (its loss and L1); on CUDA the graphed step."""

    model: Net
    opt: Adam | SGD
    sums: torch.Tensor
    data: Tensors
    precision: str
    variant: params.Variant
    graphs: GraphedStep | None = None

    def step(self, idx: torch.Tensor, regularize: bool = True) -> None:
        """:func:`train_step`, replayed from its CUDA graph where there is one."""
        if self.graphs is not None:
            self.graphs(idx, regularize)
        else:
            train_step(self, idx, regularize)


def fresh_stack(
    config: ModelConfig,
    seeds: tuple[int, ...],
    variant: params.Variant,
    data: Tensors,
    precision: str,
    cuda_graphs: bool = True,
) -> Stack:
    """Fresh models for ``seeds`` on the data's device (in the layout that
    :func:`cifar10_tricks.device.memory_format` picks), their optimizer, the running sums, and
    on CUDA (unless ``cuda_graphs`` is off: the test that compares the two) the graphed step.

    Python's, NumPy's and torch's global generators are seeded from the stack's first seed,
    though nothing in a step draws from them: a seed's init, shuffling and dropout masks are
    its own (:mod:`cifar10_tricks.dropout`).  On a device other than the CPU, or where a
    test sets ``Net.cpu_masks = "hashed"``, the masks are the hashed ones.
    """
    device = data.x_train.device
    seed_everything(seeds[0])
    model = Net(config, seeds)
    model.memory_format = memory_format(device, len(seeds))
    model.to(device, memory_format=model.memory_format)
    graphed = cuda_graphs and device.type == "cuda"
    opt = make_optimizer(model, variant, device, capturable=graphed)
    # float64 sums of up to 50,000 per-image losses; MPS has no float64.
    sums = torch.zeros(
        len(seeds), 2, device=device, dtype=torch.float32 if device.type == "mps" else torch.float64
    )
    stack = Stack(model, opt, sums, data, precision, variant)
    if graphed:
        stack.graphs = GraphedStep(stack)
    return stack


class Orders:
    """Each seed's order of the training images, epoch by epoch (``variant.shuffle``):
    every_epoch, a fresh permutation each epoch from the seed's own generator; once, the first
    epoch's permutation every epoch; sorted, by class label (stable), the same for every seed.
    On the CPU, so every device sees the same order; seed s of every variant with the same
    ``shuffle`` sees the same batches at the same batch size."""

    def __init__(self, shuffle: str, seeds: tuple[int, ...], y_train: torch.Tensor):
        self.shuffle, self.n = shuffle, len(y_train)
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.labels, self.first = y_train.cpu(), None

    def epoch(self) -> torch.Tensor:
        """The next epoch's orders, (S, N) int64 on the CPU."""
        if self.shuffle == "sorted":
            order = torch.argsort(self.labels, stable=True)
            return order.expand(len(self.generators), -1)
        if self.shuffle == "once" and self.first is not None:
            return self.first
        perm = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])
        self.first = perm
        return perm
