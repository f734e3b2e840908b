"""Benchmark: the project's trainer against the loop most users would write, and a bound.

    python -m benchmarks.bench_train [--n-train 50000 --n-test 10000 --epochs 2 --repeats 3]

On synthetic data of CIFAR-10's real size, with the same model, Adam, batch 64 and a test-set
evaluation after every epoch, it times three ways of training:

  project  the trainer `dvc repro` runs (stages.train.train_seed): uint8 data on the device,
           seeded permutations, channels_last, bf16 autocast where native, CUDA graphs on GPU;
  blog     the blog's way: a torchvision-style dataset of PIL images with ToTensor/Normalize,
           a shuffling DataLoader, fp32, batches moved to the device one by one;
  bound    the bare training step alone on batches already sliced in memory, in the
           project's precision (and, on CUDA, replayed from the same CUDA graph): no
           shuffling, no evaluation, no bookkeeping.

Each run is a fresh process (so peak RSS is its own), the modes alternate within every
repeat (so machine noise hits all of them), and the report gives medians.  Throughput is
training images per second of wall time, evaluation included for project and blog.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("project", "blog", "bound")


def _data(path: Path, n_train: int, n_test: int, noise: float = 120.0):
    """The synthetic data set at ``path``, generated there first if absent."""
    from stages import cifar

    if not path.exists():
        with __import__("tempfile").TemporaryDirectory() as tmp:
            archive = cifar.write_synthetic_archive(Path(tmp) / "a.tar.gz", n_train, n_test, seed=0, noise=noise)
            cifar.save(cifar.parse_archive(archive), path)
    return cifar.load(path)


def run_project(ds, epochs: int, device, precision: str, mean, std) -> float:
    from stages import params
    from stages.train import model_config, to_device, train_seed

    variant = params.Variant(normalize=True)
    config = model_config(variant, {"mean": mean, "std": std}, ds.classes)
    tp = params.TrainParams(epochs=epochs, seeds=(0,))
    _, history = train_seed("bench", variant, config, to_device(ds, device), 0, tp, device, precision)
    return history[-1]["test/acc"]


def run_blog(ds, epochs: int, device, precision: str, mean, std) -> float:
    """The loop of the blog's notebook (with its bugs fixed): PIL images, transforms, DataLoader."""
    import torch
    from PIL import Image
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from stages.model import ModelConfig, Net

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
            loss = F.nll_loss(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return correct / len(ds.y_test)


def run_bound(ds, epochs: int, device, precision: str, mean, std) -> float:
    import torch

    from stages import params
    from stages.model import ModelConfig, Net
    from stages.train import GraphedStep, Tensors, make_optimizer, make_step, to_device

    torch.manual_seed(0)
    data = to_device(ds, device)
    model = Net(ModelConfig(n_classes=len(ds.classes))).to(device, memory_format=torch.channels_last)
    variant = params.Variant()
    graphed = device.type == "cuda"
    opt, _ = make_optimizer(model, variant, device, capturable=graphed)
    n = len(data.x_train)
    # Batches sliced in advance: the step reads contiguous memory, no permutation.
    idx = [torch.arange(i, min(i + 64, n), device=device) for i in range(0, n, 64)]
    sliced = Tensors(data.x_train, data.y_train, data.x_test, data.y_test)
    sums = torch.zeros(2, device=device, dtype=torch.float64)
    step = make_step(model, opt, variant, sliced, precision, sums)
    if graphed:
        step = GraphedStep(step, model, opt, sums)
    for _ in range(epochs):
        for i in idx:
            step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return None  # no evaluation in the bound


def child(args) -> None:
    """One timed run of one mode; prints a JSON line."""
    import torch

    from stages.runtime import configure_torch, pick_device, pick_precision
    from stages.stats import channel_stats

    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    # The pipeline's default (train.deterministic); the blog's loop keeps glibc's allocator
    # as a user's script would (the project's tuning is part of what is measured).
    configure_torch(device, deterministic=True, allocator=args.child != "blog")
    ds = _data(Path(args.data), args.n_train, args.n_test)
    mean, std = channel_stats(ds.x_train)  # the stats stage's work, not training's
    fn = {"project": run_project, "blog": run_blog, "bound": run_bound}[args.child]
    if device.type == "cuda":  # the CUDA context (seconds) is process start-up, not training
        torch.zeros(1, device=device).sum().item()
    # So is torch._dynamo, which torch.optim imports when the first optimizer is made (3-5 s),
    # whatever the training loop: all three modes would otherwise pay it inside the timing.
    import torch._dynamo  # noqa: F401
    start = time.perf_counter()
    acc = fn(ds, args.epochs, device, precision if args.child != "blog" else "fp32", mean, std)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "mode": args.child, "seconds": seconds, "images_per_s": len(ds.y_train) * args.epochs / seconds,
        "test_acc": acc, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(device), "precision": precision if args.child != "blog" else "fp32",
        "threads": torch.get_num_threads(),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--data", default="bench-out/bench-data.npz")
    ap.add_argument("--out", default="bench-out/bench.json")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    _data(Path(args.data), args.n_train, args.n_test)  # generated once, outside the timings
    runs = []
    for r in range(args.repeats):
        for mode in args.modes.split(","):
            cmd = [sys.executable, "-m", "benchmarks.bench_train", "--child", mode, *_pass(args)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"{mode} failed:\n{out.stderr}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {r + 1} {mode:8s} {runs[-1]['images_per_s']:9.0f} img/s  "
                  f"acc {runs[-1]['test_acc']}  rss {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    summary = {}
    for mode in args.modes.split(","):
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {k: statistics.median(x[k] for x in mine) for k in ("images_per_s", "seconds", "peak_rss_mb")}
        accs = [x["test_acc"] for x in mine if x["test_acc"] is not None]
        summary[mode]["test_acc"] = statistics.median(accs) if accs else None
        summary[mode]["precision"] = mine[0]["precision"]
    if {"project", "blog"} <= summary.keys():
        summary["project_over_blog"] = summary["project"]["images_per_s"] / summary["blog"]["images_per_s"]
    if {"project", "bound"} <= summary.keys():
        summary["project_over_bound"] = summary["project"]["images_per_s"] / summary["bound"]["images_per_s"]
    import torch

    report = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "device": runs[0]["device"], "torch": torch.__version__, "python": platform.python_version(),
              "n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs,
              "repeats": args.repeats, "median": summary, "runs": runs}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


def _pass(args) -> list[str]:
    return ["--n-train", str(args.n_train), "--n-test", str(args.n_test), "--epochs", str(args.epochs),
            "--device", args.device, "--precision", args.precision, "--data", args.data]


if __name__ == "__main__":
    main()
