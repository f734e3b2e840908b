"""Shared fixtures: small synthetic archives, hostile ones crafted from them, fresh processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar10_tricks import cifar, params, predictions


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory) -> Path:
    """A synthetic CIFAR-format archive: 250 train (50 per batch) and 60 test images."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    return cifar.write_synthetic_archive(path, n_train=250, n_test=60, seed=7)


@pytest.fixture(scope="session")
def small_members(small_archive) -> dict[str, bytes]:
    return cifar.read_members(small_archive)


CPU = torch.device("cpu")
STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}  # a stats file's mean and std


@pytest.fixture(scope="module")
def data(small_archive):
    """The small archive on the CPU, as the train stage holds it (cifar10_tricks.step.Tensors)."""
    from cifar10_tricks.step import to_device

    return to_device(cifar.parse_archive(small_archive), CPU)


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` random uint8 images (N, 3, 32, 32), the same for the same ``seed``."""
    return torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def write_tar(path: Path, members: dict[str, bytes], extra=()) -> Path:
    """A .tar.gz with regular-file ``members`` plus raw TarInfo ``extra`` entries."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info in extra:
            tar.addfile(info)
    return path


ROOT = Path(__file__).resolve().parents[1]


def run_python(*args: str, check: bool = False, **env: str) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh process at the project root, with ``env`` added; text output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, **env},
    )


def fake_results(root, scores, block_size: int = 2) -> list[str]:
    """results/<variant>/<seeds>/report.json, the seeds 0, 1, ... of each variant in blocks of
    ``block_size`` ("0-1", "2", ...), as the evaluate stages write them, with each seed's test
    curves (2 epochs: the seed's score minus 0.1, then the score; loss 1.1 - score, then
    1 - score).  Returns the blocks, as train.seeds lists them."""
    n = len(next(iter(scores.values())))
    starts = range(0, n, block_size)
    blocks = [
        f"{a}-{min(a + block_size, n) - 1}" if min(a + block_size, n) - 1 > a else a for a in starts
    ]
    for name, values in scores.items():
        for block in blocks:
            seeds = params.block_seeds(block)
            report = {
                "classes": list("abcdefghij"),
                "seeds": list(seeds),
                "per_seed": {str(s): {"micro_f1": values[s]} for s in seeds},
                "curves": {
                    str(s): {
                        "test_acc": [values[s] - 0.1, values[s]],
                        "test_loss": [1.1 - values[s], 1 - values[s]],
                    }
                    for s in seeds
                },
                "made_by": {**MADE_BY, "seeds": list(seeds)},
            }
            res = root / name / str(block)
            res.mkdir(parents=True)
            (res / "report.json").write_text(json.dumps(report))
    return blocks


CLASSES = tuple("abcdefghij")  # ten plain class names
# What a train stage records of a small synthetic run (cifar10_tricks.provenance).
MADE_BY = {
    "data": {
        "source": "synthetic: generated images (seed 0, noise 120)",
        "md5": "0" * 32,
        "n_train": 500,
        "n_test": 60,
    },
    "epochs": 1,
    "batch_size": 64,
    "seeds": [3, 5],
    "device": "cpu",
    "device_name": "a test CPU",
    "precision": "fp32",
    "seeds_per_step": 1,
    "deterministic": True,
    "torch": "2.x",
}


def write_predictions(path, seeds=(3, 5), n=60, seed=0):
    """A predictions file of ``seeds`` on ``n`` test images, about 70% right; its arrays."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    pred = np.where(rng.random((len(seeds), n)) < 0.7, y, rng.integers(0, 10, (len(seeds), n)))
    nll = rng.exponential(1.0, (len(seeds), n)).astype(np.float32)
    predictions.write(path, seeds, y, pred, nll, CLASSES, MADE_BY)
    return y, pred, nll


def project_params(path: Path, variants: list[str], seeds=("0-9",), **compare) -> Path:
    """The project's params.yaml at ``path`` with only ``variants`` (each the baseline's knobs),
    train.seeds (the blocks ``seeds``) and ``compare`` keys changed: every key present, as the
    loader requires."""
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    knobs = raw["variants"]["baseline"]
    raw["variants"] = {name: dict(knobs) for name in variants}
    raw["study"], raw["studies"] = list(variants), {"blog": list(variants)}
    raw["train"]["seeds"] = list(seeds)
    raw["compare"].update({"baseline": variants[0], "parents": {}, "tricks": {}, **compare})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
