"""The CNN of TensorFlow's CNN tutorial, all three conv layers of it, and its checkpoints.

Conv(3->32) ReLU MaxPool2 -> Conv(32->64) ReLU MaxPool2 -> Conv(64->64) ReLU -> Flatten
(64 x 4 x 4 = 1024) -> Linear(1024->64) ReLU -> Linear(64->10) -> log-softmax: 122,570
parameters.  The model takes uint8 images (N, 3, 32, 32) and scales them itself (to
[0, 1], then by the train-set mean/std when ``normalize``), so a saved model needs
nothing else to be evaluated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from stages.runtime import UserError


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


class Net(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        mean = torch.tensor(config.mean if config.normalize else (0.0, 0.0, 0.0))
        std = torch.tensor(config.std if config.normalize else (1.0, 1.0, 1.0))
        # Folded into one affine map: x_uint8 * scale + shift == (x / 255 - mean) / std.
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1))
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, config.n_classes)
        self.drop_conv = nn.Dropout(config.dropout_conv)
        self.drop_dense = nn.Dropout(config.dropout_dense)
        if config.init == "kaiming_uniform":
            for layer in (self.conv1, self.conv2, self.conv3, self.fc1, self.fc2):
                # bound = sqrt(6 / fan_in), He et al. for ReLU; biases keep PyTorch's default.
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() * self.scale + self.shift
        x = F.max_pool2d(self.drop_conv(F.relu(self.conv1(x))), 2)
        x = F.max_pool2d(self.drop_conv(F.relu(self.conv2(x))), 2)
        x = self.drop_conv(F.relu(self.conv3(x)))
        x = self.drop_dense(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)

    def weights(self) -> list[torch.Tensor]:
        """The conv and linear weight matrices (not biases): what L1 penalises."""
        return [m.weight for m in (self.conv1, self.conv2, self.conv3, self.fc1, self.fc2)]


def save_checkpoint(model: Net, path: Path, **extra) -> None:
    """state_dict plus the config that rebuilds the model; no pickled module."""
    from stages.runtime import atomic_path

    payload = {"config": asdict(model.config), "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[Net, dict]:
    """Rebuild a saved model (weights-only loading: no code runs from the file)."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        config = payload["config"]
        config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        model = Net(config).to(device)
        model.load_state_dict(payload["state_dict"])
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `dvc repro` to train the model.") from None
    except Exception as exc:  # a torn or foreign file: many exception types
        raise UserError(f"{path} is not a usable checkpoint ({type(exc).__name__}: {exc}); "
                        "rerun its train stage with `dvc repro -f train@<variant>`.") from None
    return model, payload


@torch.no_grad()
def predict(model: Net, x: torch.Tensor, precision: str = "fp32", batch_size: int = 256) -> torch.Tensor:
    """Log-probabilities (float32) for uint8 images ``x`` (N, 3, 32, 32), in eval mode.

    Batches of 256 keep a batch's activations in a CPU's caches: the 10,000 test images take
    1.0 s on the 2-core CPU against 2.5 s in batches of 1,000; on a GPU either is milliseconds.
    """
    was_training = model.training
    model.eval()
    device_type = x.device.type
    out = []
    for i in range(0, len(x), batch_size):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out.append(model(x[i : i + batch_size]).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.n_classes, device=x.device)
