"""Benchmark: which learning rate gives SGD a fair trial?  A short sweep for the slide study.

    python -m benchmarks.bench_lr_sweep [--variants bare_sgd,bare_momentum,full_sgd,full_momentum]
        [--lrs 0.003,0.01,0.03,0.1,0.3] [--seeds 0,1] [--epochs 3] [--n-train 5000]

The slide study's SGD variants would "lose" to Adam by construction if they ran at Adam's
learning rate (0.001-0.002).  This trains each named variant of params.yaml at every learning
rate of the grid, with everything else as params.yaml has it, on the tiny synthetic data set
(default noise, 5,000 / 1,000 images; the pipeline's own trainer, stages.train.train_seeds, in
fp32) and reports each variant's mean test accuracy over the seeds per learning rate and the
best one.  params.yaml's lr for each is that pick; docs/pipeline.md gives the figures.  On
CIFAR-10 itself the best rate may differ: rerun with --data pointing at the real data file.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="bare_sgd,bare_momentum,full_sgd,full_momentum")
    ap.add_argument("--lrs", default="0.003,0.01,0.03,0.1,0.3")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--data", help="a data file (default: a synthetic one in bench-out/)")
    ap.add_argument("--out", default="bench-out/lr-sweep.json")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.common import synthetic_data, write_report
    from cifar10_tricks import cifar, params
    from cifar10_tricks.device import configure_torch
    from cifar10_tricks.step import to_device
    from stages.stats import channel_stats
    from stages.train import model_config, train_seeds

    device = torch.device("cpu")
    configure_torch(device, deterministic=True)
    if args.data:
        ds = cifar.load(Path(args.data))
    else:
        path = Path(f"bench-out/sweep-data-{args.n_train}.npz")
        ds = synthetic_data(path, args.n_train, args.n_test)
    mean, std = channel_stats(ds.x_train)
    data = to_device(ds, device)
    p = params.load("params.yaml")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    tp = params.TrainParams(epochs=args.epochs, seeds=seeds, device="cpu", precision="fp32")
    table: dict[str, dict[str, float | None]] = {}
    for name in args.variants.split(","):
        table[name] = {}
        for lr in (float(x) for x in args.lrs.split(",")):
            variant = dataclasses.replace(p.variants[name], lr=lr)
            config = model_config(variant, {"mean": mean, "std": std}, ds.classes)
            try:
                _, histories, _ = train_seeds(name, variant, config, data, seeds, tp, "fp32")
                acc = statistics.mean(h[-1]["test/acc"] for h in histories.values())
            except Exception as exc:  # a rate that diverges is a result, not a crash
                print(f"{name} lr {lr:g}: {type(exc).__name__}", flush=True)
                acc = None
            table[name][f"{lr:g}"] = acc
            print(f"{name} lr {lr:g}: test acc {acc}", flush=True)
    best = {
        name: max((lr for lr in accs if accs[lr] is not None), key=lambda lr: accs[lr])
        for name, accs in table.items()
    }
    report = {
        "epochs": args.epochs,
        "seeds": list(seeds),
        "n_train": len(ds.y_train),
        "data": args.data or "synthetic",
        "test_acc": table,
        "best_lr": best,
    }
    return write_report(args.out, report)


if __name__ == "__main__":
    main()
