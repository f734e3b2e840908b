"""Benchmark: what dropout adds to one training step, with each of the project's two mask sources.

    python -m benchmarks.bench_dropout [--rounds 8] [--steps 10] [--p 0.2]

Times forward + backward of the CNN at batch 64 on the CPU three ways, alternating in rounds
(so machine noise hits all of them), and reports medians of ms per step:

  none      no dropout
  streams   dropout after each conv layer's ReLU with the project's CPU masks
            (cifar10_tricks.dropout.MaskStreams, applied in place, scaled after the pool)
  hashed    the same dropout with the masks every device but the CPU draws
            (cifar10_tricks.dropout.hashed_keep: a hash of seed, layer, step and index),
            here on the CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--p", type=float, default=0.2)
    ap.add_argument("--out", default="bench-out/dropout-step.json")
    args = ap.parse_args()

    import torch
    from torch.nn import functional as F

    from benchmarks.common import write_report
    from cifar10_tricks.device import configure_torch
    from cifar10_tricks.model import ModelConfig, Net

    cpu = torch.device("cpu")
    configure_torch(cpu, deterministic=True)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 10, (64,))

    models = {}
    for name in ("none", "streams", "hashed"):
        model = Net(ModelConfig(dropout_conv=0.0 if name == "none" else args.p)).to(
            memory_format=torch.channels_last
        )
        if name == "hashed":  # the model's own off-CPU path, on the CPU
            model.cpu_masks = "hashed"
        models[name] = model
        for _ in range(3):  # warm-up
            F.nll_loss(model(x)[0], y).backward()
    ms: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.zero_grad()
                F.nll_loss(model(x)[0], y).backward()
            ms[name].append((time.perf_counter() - start) / args.steps * 1000)
    median = {name: statistics.median(v) for name, v in ms.items()}
    report = {
        "threads": torch.get_num_threads(),
        "p": args.p,
        "median_ms_per_step": median,
        "over_none": {k: v / median["none"] for k, v in median.items()},
        "rounds": ms,
    }
    report = write_report(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
