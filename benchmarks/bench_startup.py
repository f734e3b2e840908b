"""Benchmark: the fixed cost every stage process pays before it does its work.

    python -m benchmarks.bench_startup [--repeats 5] [--data bench-out/bench-data.npz]

Each stage of `dvc repro` is a fresh Python process.  For the train, evaluate and compare
stages this starts a fresh process per repeat that goes through the stage's own set-up,
phase by phase, in the stage's order, and reports the median of each phase:

  interpreter  Python start-up (the process's wall time minus the phases below)
  imports      `import stages.<stage>`: torch, NumPy, scikit-learn, matplotlib, ...
  set-up       params, device choice, thread and determinism settings
  device       the CUDA context (CUDA only): `torch.zeros(1, device="cuda")`
  load data    reading the data file (full size: 50,000 + 10,000 images)
  to device    the data set onto the device as uint8 tensors
  optimizer    making Adam: torch.optim imports torch._dynamo on first use (train only)
  first step   one training step (train) or prediction (evaluate): loads cuDNN/cuBLAS
  dvclive      importing DVCLive (train writes its curves with it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("train", "evaluate", "compare")


def child(stage: str, data: Path) -> dict:
    """Run ``stage``'s set-up phase by phase in this (fresh) process; seconds per phase."""
    from stages import STARTED

    phases: dict[str, float] = {}
    mark = [STARTED]

    def done(name: str) -> None:
        now = time.perf_counter()
        phases[name] = now - mark[0]
        mark[0] = now

    __import__(f"stages.{stage}")
    done("imports")
    if stage == "compare":
        return phases
    import torch

    from stages import cifar, params
    from stages.model import ModelConfig, Net, predict
    from stages.runtime import configure_torch, pick_device, pick_precision

    p = params.load("params.yaml")
    device = pick_device(p.train.device)
    precision = pick_precision(p.train.precision, device)
    configure_torch(device, p.train.deterministic)
    done("set-up")
    if device.type == "cuda":
        torch.zeros(1, device=device).sum().item()
        done("device")
    ds = cifar.load(data)
    done("load data")
    from stages.train import make_optimizer, make_step, to_device

    tensors = to_device(ds, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    done("to device")
    model = Net(ModelConfig(n_classes=len(ds.classes))).to(device, memory_format=torch.channels_last)
    if stage == "train":
        variant = params.Variant()
        opt = make_optimizer(model, variant, device)
        done("optimizer")
        sums = torch.zeros(1, 2, device=device, dtype=torch.float64)
        make_step(model, opt, variant, tensors, precision, sums)(torch.arange(64, device=device).view(1, 64))
        sums.tolist()
    else:
        predict(model, tensors.x_test[:1000], "fp32").sum().item()
    done("first step")
    if stage == "train":
        import dvclive  # noqa: F401

        done("dvclive")
    return phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default="bench-out/bench-data.npz",
                    help="a data file; made by benchmarks.bench_train if absent")
    ap.add_argument("--out", default="bench-out/startup.json")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data))))
        return

    if not Path(args.data).exists():
        from benchmarks.bench_train import _data

        _data(Path(args.data), 50000, 10000)
    runs: dict[str, list[dict]] = {s: [] for s in STAGES}
    for _ in range(args.repeats):
        for stage in STAGES:  # alternated, so machine noise hits every stage alike
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_startup", "--child", stage,
                                  "--data", args.data], capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            if out.returncode != 0:
                sys.exit(f"{stage} failed:\n{out.stderr}")
            phases = json.loads(out.stdout.strip().splitlines()[-1])
            runs[stage].append({"interpreter": wall - sum(phases.values()), **phases, "total": wall})
    import torch

    report = {"torch": torch.__version__, "python": sys.version.split()[0], "repeats": args.repeats,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "median_s": {s: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
                           for s, rs in runs.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**report, "runs": runs}, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
