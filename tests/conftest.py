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

from cifar10_tricks import cifar, predictions


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


def fake_results(root, scores):
    """results/<variant>/: report.json and DVCLive's per-seed curves (2 epochs: the seed's
    score minus 0.1, then the score; loss 1 - score), as the train and evaluate stages write."""
    for name, values in scores.items():
        res = root / name
        report = {
            "classes": list("abcdefghij"),
            "seeds": list(range(len(values))),
            "per_seed": {str(i): {"micro_f1": v} for i, v in enumerate(values)},
            "made_by": MADE_BY,
        }
        res.mkdir(parents=True)
        (res / "report.json").write_text(json.dumps(report))
        for seed, v in enumerate(values):
            curves = res / f"live/plots/metrics/seed_{seed}/test"
            curves.mkdir(parents=True)
            (curves / "acc.tsv").write_text(f"step\tacc\n1\t{v - 0.1}\n2\t{v}\n")
            (curves / "loss.tsv").write_text(f"step\tloss\n1\t{1.1 - v}\n2\t{1 - v}\n")


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


def project_params(path: Path, variants: list[str], **compare) -> Path:
    """The project's params.yaml at ``path`` with only ``variants`` (each the baseline's knobs)
    and ``compare`` keys changed: every key present, as the loader requires."""
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    knobs = raw["variants"]["baseline"]
    raw["variants"] = {name: dict(knobs) for name in variants}
    raw["compare"].update({"baseline": variants[0], "parents": {}, **compare})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
