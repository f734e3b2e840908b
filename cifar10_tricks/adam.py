"""Adam, computed by torch's own functional ``adam``, without ``torch.optim``'s ``torch._dynamo``
import (seconds of every train stage's start-up, `bench_startup`); the lr decays per epoch."""

from __future__ import annotations

import torch

from cifar10_tricks import params
from cifar10_tricks.model import Net


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
