"""Stage `stats`: per-channel mean and std of the training images, on the [0, 1] scale.

Input:   the data file (``--data``, from `download`); only its train split is read.
Output:  a small JSON file (``--out``, e.g. data/stats.json): ``mean``, ``std`` (R, G, B)
         and ``n_images``.  Real CIFAR-10 gives about (0.4914, 0.4822, 0.4465) /
         (0.2470, 0.2435, 0.2616).  Written and read by :mod:`cifar10_tricks.stats_file`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from cifar10_tricks import cifar, stats_file
from cifar10_tricks.cli import run_main
from cifar10_tricks.errors import UserError

log = logging.getLogger("cifar10_tricks.stats")


def channel_stats(images: np.ndarray, chunk: int = 5000) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and population std of uint8 NHWC ``images``, on [0, 1].

    Integer sums of pixel values and their squares per chunk (int64: exact, no float
    round-off; memory stays at one chunk of 5000 images, about 120 MB of int64).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise UserError(
            f"expected a non-empty (N, 32, 32, 3) image array, got shape {images.shape}."
        )
    total = np.zeros(3, dtype=np.int64)
    squares = np.zeros(3, dtype=np.int64)
    for i in range(0, len(images), chunk):
        block = images[i : i + chunk].reshape(-1, 3).astype(np.int64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    n = images.shape[0] * images.shape[1] * images.shape[2]
    # n^2 var = n sum(x^2) - (sum x)^2, in Python's unbounded integers: exact.
    mean = [int(t) / n / 255 for t in total]
    std = [((n * int(q) - int(t) ** 2) ** 0.5) / n / 255 for t, q in zip(total, squares)]
    return mean, std


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.stats", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="the data file (cifar10.npz)")
    parser.add_argument("--out", type=Path, required=True, help="where stats.json goes")
    args = parser.parse_args(argv)

    x_train = cifar.load(args.data).x_train
    mean, std = channel_stats(x_train)
    stats_file.write(args.out, mean, std, len(x_train))
    for channel, value in zip("RGB", std):
        if value == 0:
            log.warning(
                "note: channel %s is the same in every training image (std 0); with "
                "`normalize: true` the model centres it and leaves it unscaled (it is 0 after).",
                channel,
            )
    log.info(
        "train-set mean %s std %s over %d images",
        [round(m, 4) for m in mean],
        [round(s, 4) for s in std],
        len(x_train),
    )


if __name__ == "__main__":
    run_main(main)
