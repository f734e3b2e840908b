"""Benchmark: the project's trainer against the loop most users would write, and a bound.

    python -m benchmarks.bench_train [--n-train 50000 --n-test 10000 --epochs 2 --repeats 3]
    python -m benchmarks.bench_train --modes none --seeds 1,3,10          # stacked vs sequential
    python -m benchmarks.bench_train --modes none --variants init_weights,dropout_conv  # dropout

On synthetic data of CIFAR-10's real size, with the same model, Adam, batch 64 and a test-set
evaluation after every epoch, it times three ways of training:

  project  the trainer `dvc repro` runs (stages.train.train_seeds): uint8 data on the device,
           seeded permutations, channels_last, bf16 autocast where native, CUDA graphs on GPU;
  blog     the blog's way: a torchvision-style dataset of PIL images with ToTensor/Normalize,
           a shuffling DataLoader, fp32, batches moved to the device one by one;
  bound    the trainer's own step alone (cifar10_tricks.step.fresh_stack, the same model,
           layout, precision, allocator, threads and, on CUDA, CUDA graph) over the very
           batches the trainer draws, their permutations made before the clock: no
           shuffling, no evaluation, no per-epoch bookkeeping.  A lower bound on the
           trainer's time.

``--seeds 1,3,10`` adds, for each S, the trainer on S seeds two ways: ``stacked`` (all S in
one step, ``train.seeds_per_step = S``) and ``sequential`` (one seed after another,
``seeds_per_step = 1``), both with params.yaml's ``baseline``.  ``--variants a,b`` adds the
trainer on one seed of each named variant of params.yaml (``init_weights`` vs
``dropout_conv`` is the cost of conv dropout).

Each run is a fresh process (so peak RSS is its own), the runs alternate within every
repeat (so machine noise hits all of them), and the report gives medians.  Throughput is
training images per second of wall time per model (S models train S x the images),
evaluation after every epoch included for project and blog.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import synthetic_data, write_report

MODES = ("project", "blog", "bound")


def run_project(
    ds,
    epochs: int,
    device,
    precision: str,
    mean,
    std,
    variant=None,
    seeds: int = 1,
    per_step: int = 1,
) -> float:
    """The trainer on seeds 0..seeds-1 in groups of ``per_step``; the median final test accuracy."""
    import statistics

    from cifar10_tricks import params
    from cifar10_tricks.step import to_device
    from stages.train import model_config, seed_stacks, train_seeds

    variant = variant or params.Variant(normalize=True)
    config = model_config(variant, {"mean": mean, "std": std}, ds.classes)
    tp = params.TrainParams(epochs=epochs, seeds=(f"0-{seeds - 1}",))
    data = to_device(ds, device)
    accs = []
    for stack in seed_stacks(tp.all_seeds, per_step):
        _, histories, _ = train_seeds("bench", variant, config, data, stack, tp, precision)
        accs += [h[-1]["test/acc"] for h in histories.values()]
    return statistics.median(accs)


def run_blog(ds, epochs: int, device, precision: str, mean, std) -> float:
    """The loop of the blog's notebook (with its bugs fixed): PIL images, transforms, DataLoader."""
    import torch
    from PIL import Image
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from cifar10_tricks.model import ModelConfig, Net

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    class PilDataset(Dataset):  # what torchvision.datasets.CIFAR10 does per item
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return tf(Image.fromarray(self.x[i])), int(self.y[i])

    torch.manual_seed(0)
    train = DataLoader(PilDataset(ds.x_train, ds.y_train), batch_size=64, shuffle=True)
    test = DataLoader(PilDataset(ds.x_test, ds.y_test), batch_size=64)
    model = Net(ModelConfig(n_classes=len(ds.classes))).to(device)
    with torch.no_grad():  # inputs arrive normalised already
        model.scale.fill_(1.0)
        model.shift.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.nll_loss(model(x)[0], y)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                correct += (model(x.to(device))[0].argmax(1) == y.to(device)).sum().item()
    return correct / len(ds.y_test)


def run_bound(ds, epochs: int, device, precision: str, mean, std) -> tuple[float, float]:
    """The trainer's step alone over the trainer's own batches (seed 0's permutations);
    (the last epoch's training accuracy from the step's running sums, when the clock started:
    after the set-up, so the batches, model and Adam are not timed)."""
    import torch

    from cifar10_tricks import params
    from cifar10_tricks.step import fresh_stack, to_device
    from stages.train import model_config

    variant = params.Variant(normalize=True)  # run_project's variant: the same model and data
    config = model_config(variant, {"mean": mean, "std": std}, ds.classes)
    data = to_device(ds, device)
    n = len(data.x_train)
    order = torch.Generator().manual_seed(0)  # as train_seeds shuffles seed 0
    perms = [torch.randperm(n, generator=order).view(1, -1).to(device) for _ in range(epochs)]
    batches = [[perm[:, i : i + 64] for i in range(0, n, 64)] for perm in perms]
    stack = fresh_stack(config, (0,), variant, data, precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for epoch in batches:
        stack.sums.zero_()
        for idx in epoch:
            stack.step(idx)
    acc = stack.sums[0, 1].item() / n  # a host sync: every step has run
    return acc, start


def child(args) -> None:
    """One timed run of one mode; prints a JSON line."""
    import torch

    from cifar10_tricks.device import configure_torch, pick_device, pick_precision
    from stages.stats import channel_stats

    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    if args.child == "blog":
        # A user's script: the same threads and deterministic kernels as the pipeline, but
        # glibc's allocator as it is (the project's tuning is part of what is measured).
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        configure_torch(device, deterministic=True)  # what the train stage sets
    ds = synthetic_data(Path(args.data), args.n_train, args.n_test)
    mean, std = channel_stats(ds.x_train)  # the stats stage's work, not training's
    fn = {"project": run_project, "blog": run_blog, "bound": run_bound}[args.child]
    kwargs = {}
    if args.child == "project":
        from cifar10_tricks import params

        variant = params.load("params.yaml").variants[args.variant] if args.variant else None
        kwargs = {"variant": variant, "seeds": args.n_seeds, "per_step": args.per_step}
    if device.type == "cuda":  # the CUDA context (seconds) is process start-up, not training
        torch.zeros(1, device=device).sum().item()
    # So is torch._dynamo, which torch.optim imports when the first optimizer is made (3-5 s):
    # the blog's loop (torch.optim.Adam) would pay it inside its timing; the project's trainer
    # never imports it.  Imported here, before the clock, so every mode times training alone.
    import torch._dynamo  # noqa: F401

    start = time.perf_counter()
    acc = fn(
        ds, args.epochs, device, precision if args.child != "blog" else "fp32", mean, std, **kwargs
    )
    if args.child == "bound":
        acc, start = acc  # the bound starts its own clock, after its set-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": args.label,
                "seconds": seconds,
                "models": args.n_seeds,
                "images_per_s": len(ds.y_train) * args.epochs * args.n_seeds / seconds,
                # The bound evaluates nothing: its accuracy is the last epoch's, on training images.
                "acc_of": "train" if args.child == "bound" else "test",
                "acc": acc,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "device": str(device),
                "precision": precision if args.child != "blog" else "fp32",
                "threads": torch.get_num_threads(),
            }
        )
    )


def plan(args) -> list[dict]:
    """The runs of one repeat: each a child's mode, variant, seeds and seeds per step."""
    runs = [{"label": m, "child": m} for m in args.modes.split(",") if m != "none"]
    for s in (int(x) for x in args.seeds.split(",") if x):
        runs.append(
            {
                "label": f"stacked_{s}",
                "child": "project",
                "variant": "baseline",
                "n_seeds": s,
                "per_step": s,
            }
        )
        if s > 1:
            runs.append(
                {
                    "label": f"sequential_{s}",
                    "child": "project",
                    "variant": "baseline",
                    "n_seeds": s,
                    "per_step": 1,
                }
            )
    runs += [
        {"label": f"variant_{v}", "child": "project", "variant": v}
        for v in args.variants.split(",")
        if v
    ]
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="of project, blog, bound; or none")
    ap.add_argument("--seeds", default="", help="e.g. 1,3,10: stacked vs sequential for each S")
    ap.add_argument(
        "--variants", default="", help="e.g. init_weights,dropout_conv (from params.yaml)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--data", default="bench-out/bench-data.npz")
    ap.add_argument("--out", default="bench-out/bench.json")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--label", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--n-seeds", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--per-step", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    # generated once, outside the timings
    synthetic_data(Path(args.data), args.n_train, args.n_test)
    runs, planned = [], plan(args)
    for r in range(args.repeats):
        for spec in planned:
            extra = [f"--{k.replace('_', '-')}={v}" for k, v in spec.items()]
            cmd = [sys.executable, "-m", "benchmarks.bench_train", *extra, *_pass(args)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"{spec['label']} failed:\n{out.stderr}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(
                f"repeat {r + 1} {spec['label']:24s} {run['images_per_s']:9.0f} img/s per model  "
                f"{run['seconds']:7.1f} s  {run['acc_of']} acc {run['acc']:.4f}  "
                f"rss {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    summary = {}
    for spec in planned:
        mine = [x for x in runs if x["mode"] == spec["label"]]
        summary[spec["label"]] = {
            k: statistics.median(x[k] for x in mine)
            for k in ("images_per_s", "seconds", "peak_rss_mb")
        }
        summary[spec["label"]].update(
            {
                f"{mine[0]['acc_of']}_acc": statistics.median(x["acc"] for x in mine),
                "precision": mine[0]["precision"],
                "models": mine[0]["models"],
            }
        )
    ratios = {}
    if {"project", "blog"} <= summary.keys():
        ratios["project_over_blog"] = (
            summary["project"]["images_per_s"] / summary["blog"]["images_per_s"]
        )
    if {"project", "bound"} <= summary.keys():
        ratios["project_over_bound"] = (
            summary["project"]["images_per_s"] / summary["bound"]["images_per_s"]
        )
    for label in summary:
        if label.startswith("sequential_"):
            s = label.split("_")[1]
            ratios[f"stacked_over_sequential_{s}"] = (
                summary[f"stacked_{s}"]["images_per_s"] / summary[label]["images_per_s"]
            )
    variants = [label for label in summary if label.startswith("variant_")]
    for label in variants[1:]:
        ratios[f"{label}_epoch_over_{variants[0]}"] = (
            summary[label]["seconds"] / summary[variants[0]]["seconds"]
        )
    report = write_report(
        args.out,
        {
            "device": runs[0]["device"],
            "n_train": args.n_train,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "median": summary,
            "ratios": ratios,
            "runs": runs,
        },
    )
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


def _pass(args) -> list[str]:
    return [
        "--n-train",
        str(args.n_train),
        "--n-test",
        str(args.n_test),
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--data",
        args.data,
    ]


if __name__ == "__main__":
    main()
