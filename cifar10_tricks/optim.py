"""The optimizers, Adam and SGD, each computed by torch's own functional form, without
``torch.optim``'s ``torch._dynamo`` import (seconds of every train stage's start-up,
`bench_startup`); the lr decays per epoch, and L2 applies from ``regularize_from`` on."""

from __future__ import annotations

import torch

from cifar10_tricks import params
from cifar10_tricks.model import Net


class _Optimizer:
    """What Adam and SGD share: the parameters and their state, an lr that decays per epoch
    (on CUDA graphs a device tensor updated in place, so a replayed step sees each epoch's lr),
    zero_grad, and L2 (``weight_decay``) switched on or off per step.

    ``torch.optim.Adam`` and ``torch.optim.SGD`` (any ``torch.optim.Optimizer``) import
    ``torch._dynamo`` when made and on every step, zero_grad and state_dict, though nothing here
    compiles: seconds of every train stage's start-up (`bench_startup`).  No setting avoids
    that.  The updates themselves are ``torch.optim.adam.adam`` and ``torch.optim.sgd.sgd``,
    the functional forms their ``step`` calls (the same foreach, fused and capturable kernels);
    these classes keep only the state, laid out as torch.optim lays it out.
    """

    def __init__(
        self,
        parameters,
        lr: float,
        gamma: float,
        weight_decay: float,
        device: torch.device,
        capturable: bool = False,
    ):
        self.params = list(parameters)
        self.lr, self.gamma, self.weight_decay = lr, gamma, weight_decay
        self.capturable = capturable
        self.foreach, self.fused = device.type == "cpu", device.type == "cuda"
        self.lr_tensor = torch.tensor(lr, device=device) if capturable else None
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def decay(self) -> None:
        """End of an epoch: lr <- lr * gamma (torch's ExponentialLR)."""
        self.lr *= self.gamma
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(self.lr)

    def _lr(self):
        return self.lr_tensor if self.capturable else self.lr

    def _with_grads(self) -> list[torch.Tensor]:
        return [p for p in self.params if p.grad is not None]


class Adam(_Optimizer):
    """torch's Adam (betas 0.9, 0.999; eps 1e-8), L2 through its weight_decay."""

    def __init__(self, parameters, lr, gamma, weight_decay, device, capturable=False):
        super().__init__(parameters, lr, gamma, weight_decay, device, capturable)
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

    @torch.no_grad()
    def step(self, regularize: bool = True) -> None:
        """One update; ``regularize``: whether L2 applies at this step."""
        from torch.optim.adam import adam

        params = self._with_grads()
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
            lr=self._lr(),
            weight_decay=self.weight_decay if regularize else 0.0,
        )


class SGD(_Optimizer):
    """torch's SGD with ``momentum`` (0: plain SGD; no dampening, no Nesterov), L2 through its
    weight_decay.  The momentum buffers start at zero, which is what torch's first step does
    (buffer = gradient), and are there before a CUDA graph's capture."""

    def __init__(self, parameters, lr, gamma, weight_decay, momentum, device, capturable=False):
        super().__init__(parameters, lr, gamma, weight_decay, device, capturable)
        self.momentum = momentum
        self.state = {
            p: {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}
            if momentum
            else {}
            for p in self.params
        }

    @torch.no_grad()
    def step(self, regularize: bool = True) -> None:
        """One update; ``regularize``: whether L2 applies at this step."""
        from torch.optim.sgd import sgd

        params = self._with_grads()
        sgd(
            params,
            [p.grad for p in params],
            [self.state[p].get("momentum_buffer") for p in params],
            foreach=self.foreach,
            fused=self.fused,
            weight_decay=self.weight_decay if regularize else 0.0,
            momentum=self.momentum,
            lr=self._lr(),
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )


def make_optimizer(
    model: Net, variant: params.Variant, device: torch.device, capturable: bool = False
) -> Adam | SGD:
    """``variant.optimizer`` with L2 through its weight_decay, and an lr decaying by lr_decay per
    epoch."""
    args = (model.parameters(), variant.lr, variant.lr_decay, variant.weight_decay)
    if variant.optimizer == "sgd":
        return SGD(*args, variant.momentum, device, capturable)
    return Adam(*args, device, capturable)
