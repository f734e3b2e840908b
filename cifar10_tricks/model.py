"""The CNN of TensorFlow's CNN tutorial, all three conv layers of it, S seeds at a time.

Conv(3->32) ReLU MaxPool2 -> Conv(32->64) ReLU MaxPool2 -> Conv(64->64) ReLU -> Flatten
(64 x 4 x 4 = 1024) -> Linear(1024->64) ReLU -> Linear(64->10) -> log-softmax: 122,570
parameters per seed.  ``activation`` puts tanh or a sigmoid where ReLU is.  The model takes
uint8 images and scales them itself (to [0, 1], then by the train-set mean/std when
``normalize``), so a saved model needs nothing else to be evaluated.

One class serves one seed and S seeds trained together.  ``Net(config, seeds)`` holds
S = len(seeds) independent models whose every tensor is the S single models' tensors
concatenated along dim 0: convolutions run with ``groups=S`` (seed s sees only channel
block s), the dense layers as batched matmuls.  Its input is (B, S*3, 32, 32): channel
block s is seed s's batch of images; its output is (S, B, classes).  With one seed it is
exactly the single model, and :meth:`Net.single` cuts seed s out of a stack as one.
Grouped convolutions, not ``torch.func.vmap``: vmap lowers a batched convolution to a
grouped one and adds its own work (`bench_stack` times grouped, vmap and one by one).
Each seed keeps its own initialisation (drawn from its own seed) and its own dropout masks,
whatever it is stacked with (:mod:`cifar10_tricks.dropout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from cifar10_tricks.dropout import DEFAULT_STEPS, MaskStreams, ReluDropout, hashed_keep, step_keys

LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")
ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@dataclass(frozen=True)
class ModelConfig:
    n_classes: int = 10
    normalize: bool = False
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    init: str = "default"
    dropout_conv: float = 0.0
    dropout_dense: float = 0.0
    classes: tuple[str, ...] = field(default_factory=tuple)
    activation: str = "relu"  # relu | tanh | sigmoid, after each conv layer and fc1


def _shapes(n_classes: int) -> dict[str, tuple[int, ...]]:
    """Each layer's single-model weight shape (out, in[, kh, kw]), as nn.Conv2d/nn.Linear."""
    return {
        "conv1": (32, 3, 3, 3),
        "conv2": (64, 32, 3, 3),
        "conv3": (64, 64, 3, 3),
        "fc1": (64, 64 * 4 * 4),
        "fc2": (n_classes, 64),
    }


class _Layer(nn.Module):
    """Weights (S*out, in, ...) and biases (S*out,) of one layer for S seeds."""

    def __init__(self, shape: tuple[int, ...], n_seeds: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_seeds * shape[0], *shape[1:]))
        self.bias = nn.Parameter(torch.empty(n_seeds * shape[0]))


class Net(nn.Module):
    # Where the CPU's dropout masks come from: "streams" (MaskStreams, the fast path there) or
    # "hashed", the path every other device takes; the tests run that one on the CPU too.
    cpu_masks = "streams"

    def __init__(self, config: ModelConfig, seeds: tuple[int, ...] = (0,)):
        super().__init__()
        self.config, self.seeds = config, tuple(seeds)
        n = len(self.seeds)
        if n < 1:
            raise ValueError("a Net needs at least one seed")
        mean = torch.tensor(config.mean if config.normalize else (0.0, 0.0, 0.0))
        std = torch.tensor(config.std if config.normalize else (1.0, 1.0, 1.0))
        # A constant channel (std 0) is centred and left unscaled: it is 0 after its mean goes.
        std = torch.where(std > 0, std, torch.ones_like(std))
        # Folded into one affine map: x_uint8 * scale + shift == (x / 255 - mean) / std.
        self.register_buffer("scale", (1.0 / (255.0 * std)).repeat(n).view(3 * n, 1, 1))
        self.register_buffer("shift", (-mean / std).repeat(n).view(3 * n, 1, 1))
        for name, shape in _shapes(config.n_classes).items():
            setattr(self, name, _Layer(shape, n))
        self.masks: MaskStreams | None = None  # CPU dropout masks, per seed; made on first use
        # Off the CPU: the training steps taken, which hashed masks are drawn from (on the
        # device, so a CUDA graph reads and advances it; not saved with a model), and the
        # seeds' keys for each step (dropout.step_keys: made on first use, or by plan_dropout).
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.int64), False)
        self.mask_keys: torch.Tensor | None = None
        self._mask_index: dict = {}  # hashed_keep's per-shape indices, made on first use
        self.memory_format = torch.channels_last  # of the activations; step.fresh_stack sets it
        self.reset_parameters()

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def reset_parameters(self) -> None:
        """Each seed's weights drawn from a generator seeded with that seed alone.

        ``default`` is PyTorch's own init of Conv2d/Linear (``kaiming_uniform_`` with a = sqrt(5):
        weights and biases uniform in +-1/sqrt(fan_in)); ``kaiming_uniform`` draws weights in
        +-sqrt(6/fan_in) (He et al., for ReLU) and keeps the default biases.  Each seed's slice
        is initialised as a model of its own, so a seed gets the same weights in any stack.
        """
        for s, seed in enumerate(self.seeds):
            g = torch.Generator().manual_seed(seed)
            for name in LAYERS:
                layer = getattr(self, name)
                w, b = (
                    layer.weight.data.chunk(self.n_seeds)[s],
                    layer.bias.data.chunk(self.n_seeds)[s],
                )
                if self.config.init == "kaiming_uniform":
                    nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g)
                else:
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                bound = 1 / math.sqrt(w[0].numel())  # fan_in
                nn.init.uniform_(b, -bound, bound, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, S*3, 32, 32), seed s's in channels 3s..3s+2 -> (S, B, classes)."""
        n, cfg = self.n_seeds, self.config
        self._keys = None
        if self.training and (cfg.dropout_conv > 0 or cfg.dropout_dense > 0):
            self.dropout_step += 1  # one training step: the hashed masks' counter
            if x.device.type != "cpu" or self.cpu_masks != "streams":
                self._keys = self._step_keys()
        # The stack's layout (cifar10_tricks.device.memory_format), whatever the input's.
        x = (x.float() * self.scale + self.shift).contiguous(memory_format=self.memory_format)
        for i, name in enumerate(("conv1", "conv2", "conv3")):
            layer = getattr(self, name)
            x = F.conv2d(x, layer.weight, layer.bias, groups=n)
            x = self._activate_dropout(x, cfg.dropout_conv, i, pool=name != "conv3")
        # (S, B, 1024), each seed flattened as (c, h, w)
        x = x.reshape(len(x), n, -1).transpose(0, 1)
        x = self._activate_dropout(self._dense(self.fc1, x), cfg.dropout_dense, 3)
        return F.log_softmax(self._dense(self.fc2, x), dim=-1)

    def _dense(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        n = self.n_seeds
        w = layer.weight.view(n, -1, layer.weight.shape[1]).transpose(1, 2)  # (S, in, out)
        return torch.baddbmm(layer.bias.view(n, 1, -1), x, w)

    def _activate_dropout(
        self, x: torch.Tensor, p: float, layer: int, pool: bool = False
    ) -> torch.Tensor:
        """The activation, dropout with drop probability ``p`` where training (the blog's
        order), then the 2x2 max-pool where ``pool``; ``layer`` numbers the dropout (0-2 conv,
        3 dense).

        On the CPU the masks come from :class:`MaskStreams` (for ReLU applied in place to its
        output); elsewhere :func:`hashed_keep` draws them from (seed, layer, step, index).
        Either way the kept activations are scaled by 1/(1-p) after the pool: the same numbers
        (a positive scale commutes with max, and rounding is monotone) on a quarter of them.
        """
        act = ACTIVATIONS[self.config.activation]
        if self.training and p > 0 and x.device.type == "cpu" and self.cpu_masks == "streams":
            if self.masks is None:
                self.masks = MaskStreams(self.seeds)
            if self.config.activation == "relu":
                x = ReluDropout.apply(x, self.masks, p)
            else:  # tanh's and sigmoid's backward need their output: the mask is a tensor
                x = act(x) * self.masks.drop_(torch.ones_like(x), p)
            return (F.max_pool2d(x, 2) if pool else x) * (1.0 / (1.0 - p))
        x = act(x)
        if not (self.training and p > 0):
            return F.max_pool2d(x, 2) if pool else x
        keep = hashed_keep(tuple(x.shape), self._keys[layer], p, self._mask_index)
        # Converted to the activations' dtype once: a bool operand is converted inside every op
        # that reads it, the backward's included (bench_dropout: 1.6x a plain step, not 1.7x).
        x = x * keep.to(x.dtype)
        return (F.max_pool2d(x, 2) if pool else x) * (1.0 / (1.0 - p))

    def plan_dropout(self, steps: int) -> None:
        """Hash the seeds' mask keys for ``steps`` training steps (the trainer's epochs x
        batches), on the model's device, before training: a CUDA graph captures no copy."""
        cfg = self.config
        streams = self.dropout_step.device.type == "cpu" and self.cpu_masks == "streams"
        if (cfg.dropout_conv > 0 or cfg.dropout_dense > 0) and not streams:
            held = 0 if self.mask_keys is None else len(self.mask_keys) - 1
            if steps > held or self.mask_keys.device != self.dropout_step.device:
                self.mask_keys = step_keys(self.seeds, steps + 1).to(self.dropout_step.device)

    def _step_keys(self) -> torch.Tensor:
        """This step's row of the key table, (dropout layers, 2, S): one indexing op."""
        if self.mask_keys is None or self.mask_keys.device != self.dropout_step.device:
            self.plan_dropout(DEFAULT_STEPS)
        return self.mask_keys.index_select(0, self.dropout_step.view(1))[0]

    def weights(self) -> list[torch.Tensor]:
        """The conv and linear weight matrices (not biases): what L1 penalises."""
        return [getattr(self, name).weight for name in LAYERS]

    def single(self, s: int) -> Net:
        """Seed number ``s`` of the stack as a one-seed model (a copy, on the CPU)."""
        one = Net(self.config, (self.seeds[s],))
        one.load_state_dict(
            {k: v.detach().chunk(self.n_seeds)[s].cpu() for k, v in self.state_dict().items()}
        )
        return one


def stack_images(x: torch.Tensor) -> torch.Tensor:
    """(S, B, 3, 32, 32) images, one batch per seed -> the stacked input (B, S*3, 32, 32).

    In channels_last memory a stacked batch is (B, 32, 32, S*3): each pixel holds every
    seed's 3 channels side by side.  With one seed this is a view, no copy.
    """
    n, b = x.shape[:2]
    nhwc = x.permute(1, 3, 4, 0, 2)  # (B, H, W, S, 3)
    return nhwc.reshape(b, *nhwc.shape[1:3], n * 3).permute(0, 3, 1, 2)


# Images per evaluation batch, by device type: 256 keeps a batch's activations in a CPU's
# caches (1,000 took 2.5x as long on a 2-core CPU); on a GPU a few launches per split (the
# activations of 2,000 images for a stack of 10 are ~1.6 GB in bf16; gpu_check times both).
EVAL_BATCH = {"cpu": 256, "cuda": 2000, "mps": 1000}


@torch.no_grad()
def predict(
    model: Net, x: torch.Tensor, precision: str = "fp32", batch_size: int | None = None
) -> torch.Tensor:
    """Log-probabilities (S, N, classes), float32, of every seed for uint8 images ``x``
    (N, 3, 32, 32), in eval mode, in batches of ``batch_size`` (:data:`EVAL_BATCH` for the
    device by default)."""
    batch_size = batch_size or EVAL_BATCH.get(x.device.type, 256)
    was_training = model.training
    model.eval()
    device_type = x.device.type
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        xb = stack_images(xb.unsqueeze(0).expand(model.n_seeds, *xb.shape))
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out.append(model(xb).float())
    model.train(was_training)
    if not out:
        return torch.empty(model.n_seeds, 0, model.config.n_classes, device=x.device)
    return torch.cat(out, dim=1)
