"""One training step of S stacked seeds, and the set-up it needs: data on the device, Adam, sums.

:func:`prepare` builds what a step needs (the stacked model, Adam, the running sums, the
step itself, replayed from a CUDA graph on CUDA); the train stage and the benchmarks both
call it, so what they time is what `dvc repro` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from stages import cifar, params
from stages.device import memory_format, seed_everything
from stages.model import ModelConfig, Net, stack_images


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


class Adam:
    """torch's Adam, run through its functional form, with an lr that decays per epoch.

    ``torch.optim.Adam`` (any ``torch.optim.Optimizer``) imports ``torch._dynamo`` when it is
    made and on every step, zero_grad and state_dict, though nothing here compiles: seconds of
    every train stage's start-up (`bench_startup`).  No setting avoids that.  The update
    itself is ``torch.optim.adam.adam``, the functional API ``torch.optim.Adam.step`` calls
    (the same foreach, fused and capturable kernels); this class only keeps its state
    (step count, first and second moments, as torch.optim.Adam lays them out) and does
    ExponentialLR's decay, ``lr <- lr * gamma`` once per epoch.

    ``capturable``: for CUDA graphs, the lr and step counts live in device tensors updated
    in place, so a replayed step sees each epoch's lr.
    """

    def __init__(
        self,
        params,
        lr: float,
        gamma: float,
        weight_decay: float,
        device: torch.device,
        capturable: bool = False,
    ):
        self.params = list(params)
        self.lr, self.gamma, self.weight_decay, self.capturable = (
            lr,
            gamma,
            weight_decay,
            capturable,
        )
        self.foreach, self.fused = device.type == "cpu", device.type == "cuda"
        self.lr_tensor = torch.tensor(lr, device=device) if capturable else None
        on_device = capturable or self.fused
        self.state = {
            p: {
                "step": torch.zeros(
                    (), dtype=torch.float32, device=p.device if on_device else "cpu"
                ),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
            for p in self.params
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.adam import adam

        params = [p for p in self.params if p.grad is not None]
        state = [self.state[p] for p in params]
        adam(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in state],
            [s["exp_avg_sq"] for s in state],
            [],
            [s["step"] for s in state],
            foreach=self.foreach,
            fused=self.fused,
            capturable=self.capturable,
            amsgrad=False,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            maximize=False,
            lr=self.lr_tensor if self.capturable else self.lr,
            weight_decay=self.weight_decay,
        )

    def decay(self) -> None:
        """End of an epoch: lr <- lr * gamma (torch's ExponentialLR)."""
        self.lr *= self.gamma
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(self.lr)


def make_optimizer(
    model: Net, variant: params.Variant, device: torch.device, capturable: bool = False
) -> Adam:
    """Adam with L2 through its weight_decay, and an lr decaying by lr_decay per epoch."""
    return Adam(
        model.parameters(), variant.lr, variant.lr_decay, variant.weight_decay, device, capturable
    )


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


def make_step(
    model: Net, opt, variant: params.Variant, data: Tensors, precision: str, sums: torch.Tensor
):
    """``step(idx)``: one Adam step of every seed on its images ``idx`` (S, B), adding each
    seed's (NLL sum, correct) into ``sums`` (S, 2)."""
    device_type = data.x_train.device.type
    nhwc = data.x_train.permute(0, 2, 3, 1)  # the images as stored: (N, 32, 32, 3)

    def step(idx: torch.Tensor, set_to_none: bool = True) -> None:
        xb = stack_images(nhwc[idx].permute(0, 1, 4, 2, 3))
        yb = data.y_train[idx]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(xb)
        loss, nll = loss_fn(model, out, yb, variant.l1)
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()
        # Running sums on the device: no host sync per batch (it stalls a GPU).
        sums[:, 0] += nll.detach() * idx.shape[1]
        sums[:, 1] += (out.argmax(-1) == yb).sum(1)

    return step


class GraphedStep:
    """The same step, captured once per batch size in a CUDA graph and replayed.

    At batch 64 this model's kernels take microseconds; launching them one by one from
    Python costs more than running them.  A graph replays the whole step (indexing,
    forward, backward, Adam) in one launch.  Capture needs a few warm-up steps, so the
    parameters, Adam's state and the running sums are saved before and restored after:
    training goes on exactly from where it was, as the eager step would.
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

    def _snapshot(self):
        state = {p: {k: v.clone() for k, v in st.items()} for p, st in self.opt.state.items()}
        return [p.detach().clone() for p in self.model.parameters()], state, self.sums.clone()

    def _restore(self, saved) -> None:
        """Copy back in place: the graph holds these tensors' addresses."""
        weights, state, sums = saved
        with torch.no_grad():
            for p, s in zip(self.model.parameters(), weights):
                p.copy_(s)
            for p, st in self.opt.state.items():
                for k, v in st.items():
                    if p in state:
                        v.copy_(state[p][k])
                    else:  # state the warm-up itself created: Adam starts from zero
                        v.zero_()
            self.sums.copy_(sums)

    def __call__(self, idx: torch.Tensor) -> None:
        if idx.shape not in self.graphs:
            self.graphs[idx.shape] = self._capture(idx)
        graph, static_idx = self.graphs[idx.shape]
        static_idx.copy_(idx)
        graph.replay()


@dataclass
class Training:
    """What one stacked step needs: ``step(idx)`` trains every seed on its images ``idx`` (S, B)
    and adds each seed's (NLL sum, correct count) to ``sums`` (S, 2)."""

    model: Net
    opt: Adam
    sums: torch.Tensor
    step: Callable[[torch.Tensor], None]


def prepare(
    config: ModelConfig,
    seeds: tuple[int, ...],
    variant: params.Variant,
    data: Tensors,
    precision: str,
    cuda_graphs: bool = True,
    layout: torch.memory_format | None = None,
) -> Training:
    """Fresh models for ``seeds`` on the data's device, Adam, the running sums and the step,
    in ``layout`` (default: :func:`stages.device.memory_format`'s choice).

    Python's, NumPy's and torch's global generators are seeded from the stack's first seed:
    on a GPU dropout draws from torch's (a seed's own init, shuffling and CPU masks have
    their own generators).
    """
    device = data.x_train.device
    seed_everything(seeds[0])
    model = Net(config, seeds)
    model.memory_format = layout or memory_format(device, len(seeds))
    model.to(device, memory_format=model.memory_format)
    graphed = cuda_graphs and device.type == "cuda"
    opt = make_optimizer(model, variant, device, capturable=graphed)
    # float64 sums of up to 50,000 per-image losses; MPS has no float64.
    sums = torch.zeros(
        len(seeds), 2, device=device, dtype=torch.float32 if device.type == "mps" else torch.float64
    )
    step = make_step(model, opt, variant, data, precision, sums)
    if graphed:
        step = GraphedStep(step, model, opt, sums)
    return Training(model, opt, sums, step)
