"""One training step of S stacked seeds, :func:`train_step`, and its replay from a CUDA graph.

The train stage's loop (``stages.train.train_seeds``) calls the step that :func:`fresh_stack`
returns: :func:`train_step` with its arguments bound, or on CUDA that same function replayed
from a graph (:class:`GraphedStep`).  Benchmarks build their stacks with :func:`fresh_stack`
too, so what they time is what `dvc repro` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from cifar10_tricks import cifar, params
from cifar10_tricks.adam import Adam, make_optimizer
from cifar10_tricks.device import memory_format, seed_everything
from cifar10_tricks.model import ModelConfig, Net, stack_images


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
    model: Net, log_probs: torch.Tensor, y: torch.Tensor, l1: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to minimise, each seed's mean NLL (S,)) for log-probs (S, B, C), labels (S, B).

    The loss sums the seeds' mean NLLs, so each seed's gradient is its own alone.  PyTorch
    has no built-in L1, so it is added here (a sum over every seed's weights: each seed's
    gradient again its own).
    """
    n, b, c = log_probs.shape
    nll = (
        F.nll_loss(log_probs.float().reshape(n * b, c), y.reshape(-1), reduction="none")
        .view(n, b)
        .mean(1)
    )
    loss = nll.sum()
    if l1 == 0:
        return loss, nll
    return loss + l1 * sum(w.abs().sum() for w in model.weights()), nll


def train_step(
    model: Net,
    opt: Adam,
    data: Tensors,
    sums: torch.Tensor,
    precision: str,
    l1: float,
    idx: torch.Tensor,
    set_to_none: bool = True,
) -> None:
    """One Adam step of every seed of ``model`` on its training images ``idx`` (S, B), adding
    each seed's (NLL sum, correct count) into ``sums`` (S, 2)."""
    nhwc = data.x_train.permute(0, 2, 3, 1)  # the images as stored: (N, 32, 32, 3)
    xb = stack_images(nhwc[idx].permute(0, 1, 4, 2, 3))
    yb = data.y_train[idx]
    device_type = data.x_train.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(xb)
    loss, nll = loss_fn(model, out, yb, l1)
    opt.zero_grad(set_to_none=set_to_none)
    loss.backward()
    opt.step()
    # Running sums on the device: no host sync per batch (it stalls a GPU).
    sums[:, 0] += nll.detach() * idx.shape[1]
    sums[:, 1] += (out.argmax(-1) == yb).sum(1)


class GraphedStep:
    """:func:`train_step` (``step``, its arguments bound but ``idx``), captured once per batch
    shape in a CUDA graph and replayed.

    At batch 64 this model's kernels take microseconds; launching them one by one from
    Python costs more than running them.  A graph replays the whole step (indexing,
    forward, backward, Adam) in one launch.  Capture needs a few warm-up steps, so the
    parameters, the model's buffers (the dropout step counter), Adam's state and the running
    sums are saved before and restored after: training goes on exactly from where it was, and
    draws the same masks, as the eager step would.
    """

    def __init__(self, step, model: Net, opt, sums: torch.Tensor, n_warmup: int = 3):
        self.step, self.model, self.opt, self.sums, self.n_warmup = step, model, opt, sums, n_warmup
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def _capture(self, idx: torch.Tensor):
        static_idx = idx.clone()
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.n_warmup):
                self.step(static_idx)
        torch.cuda.current_stream().wait_stream(side)
        self.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step(static_idx, set_to_none=False)
        self._restore(saved)
        return graph, static_idx

    def _tensors(self) -> list[torch.Tensor]:
        """What a step changes in the model: its weights, and its buffers (the dropout masks'
        step counter among them, so the warm-up's steps draw no masks of the real ones)."""
        return [*self.model.parameters(), *self.model.buffers()]

    def _snapshot(self):
        state = {p: {k: v.clone() for k, v in st.items()} for p, st in self.opt.state.items()}
        return [t.detach().clone() for t in self._tensors()], state, self.sums.clone()

    def _restore(self, saved) -> None:
        """Copy back in place: the graph holds these tensors' addresses."""
        tensors, state, sums = saved
        with torch.no_grad():
            for t, s in zip(self._tensors(), tensors):
                t.copy_(s)
            for p, st in self.opt.state.items():  # made with the optimizer: every key is there
                for k, v in st.items():
                    v.copy_(state[p][k])
            self.sums.copy_(sums)

    def __call__(self, idx: torch.Tensor) -> None:
        if idx.shape not in self.graphs:
            self.graphs[idx.shape] = self._capture(idx)
        graph, static_idx = self.graphs[idx.shape]
        static_idx.copy_(idx)
        graph.replay()


@dataclass
class Stack:
    """Fresh models for S seeds trained as one: ``step(idx)`` trains every seed on its images
    ``idx`` (S, B) and adds each seed's (NLL sum, correct count) to ``sums`` (S, 2)."""

    model: Net
    opt: Adam
    sums: torch.Tensor
    step: Callable[[torch.Tensor], None]


def fresh_stack(
    config: ModelConfig,
    seeds: tuple[int, ...],
    variant: params.Variant,
    data: Tensors,
    precision: str,
    cuda_graphs: bool = True,
) -> Stack:
    """Fresh models for ``seeds`` on the data's device (in the layout that
    :func:`cifar10_tricks.device.memory_format` picks), their Adam, the running sums, and the
    step: graphed on CUDA unless ``cuda_graphs`` is off (the test that compares the two).

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
    step = partial(train_step, model, opt, data, sums, precision, variant.l1)
    if graphed:
        step = GraphedStep(step, model, opt, sums)
    return Stack(model, opt, sums, step)
