"""Saved models: one seed's state_dict together with the config that rebuilds it.

A checkpoint is a dict of tensors and plain values (no pickled module), loaded with
``weights_only=True``, so no code runs from the file.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import torch

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import atomic_path
from cifar10_tricks.model import ModelConfig, Net


def save(model: Net, path: Path, **extra) -> None:
    """A one-seed model's state_dict plus the config that rebuilds it; no pickled module."""
    if model.n_seeds != 1:
        raise ValueError("save one seed at a time: model.single(s)")
    payload = {
        "config": asdict(model.config),
        "state_dict": model.state_dict(),
        "seed": model.seeds[0],
        **extra,
    }
    # Serialised in memory, then written: torch.save names the zip's records after the file it
    # writes to, which atomic_path makes with a random name; a buffer's records are always
    # "archive/...", so the same model gives the same bytes.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load(path: Path, device: torch.device | str = "cpu") -> tuple[Net, dict]:
    """Rebuild a saved one-seed model (weights-only loading: no code runs from the file)."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        config = payload["config"]
        config = ModelConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        )
        model = Net(config, (int(payload.get("seed", 0)),)).to(device)
        model.load_state_dict(payload["state_dict"])
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; run `dvc repro` to train it (stage train@<variant>-<seeds>)."
        ) from None
    except Exception as exc:  # a torn or foreign file: many exception types
        raise UserError(
            f"{path} is not a usable checkpoint ({type(exc).__name__}: {exc}); "
            f"{rerun('train@<variant>-<seeds>', 'its train stage')}."
        ) from None
    return model, payload
