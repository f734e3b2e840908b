"""Benchmark: the fixed cost every stage process pays before it does its work.

    python -m benchmarks.bench_startup [--repeats 5] [--data bench-out/bench-data.npz]
    python -m benchmarks.bench_startup --stages [--repeats 3]   # whole stage processes, tiny data

``--stages`` runs each real stage command (`python -m stages.train|evaluate|compare`, as
dvc.yaml gives it) on tiny synthetic data (500 train / 100 test images, 1 epoch, 1 seed) in
fresh processes, alternating, and reports the medians of each process's wall time, of its
own ``<stage> done in X s`` line (its work after imports), and of the difference: what a
stage costs beyond its real work.

Each stage of `dvc repro` is a fresh Python process.  For the train, evaluate and compare
stages this starts a fresh process per repeat that goes through the stage's own set-up,
phase by phase, in the stage's order, and reports the median of each phase:

  interpreter  Python start-up (the process's wall time minus the phases below)
  imports      `import stages.<stage>`: torch (train), NumPy, scikit-learn, SciPy, ...
  set-up       params, device choice, thread and determinism settings (train)
  device       the CUDA context (CUDA only): `torch.zeros(1, device="cuda")`
  load data    reading the data file (full size: 50,000 + 10,000 images; train), or the
               predictions file (evaluate)
  to device    the data set onto the device as uint8 tensors (train)
  optimizer    making Adam (train)
  first step   one training step (train), or scoring one seed (evaluate)
  bench set-up evaluate only: writing the predictions file it reads (the train stage's work,
               left out of the total)
  dvclive      importing DVCLive (train writes its curves with it)
  matplotlib   importing matplotlib and drawing one empty PNG, without pyplot as the
               stage does (compare)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import parse_done, synthetic_data, write_report

STAGES = ("train", "evaluate", "compare")


def child(stage: str, data: Path) -> dict:
    """Run ``stage``'s set-up phase by phase in this (fresh) process; seconds per phase."""
    phases: dict[str, float] = {}
    mark = [time.perf_counter()]

    def done(name: str) -> None:
        now = time.perf_counter()
        phases[name] = now - mark[0]
        mark[0] = now

    __import__(f"stages.{stage}")
    done("imports")
    if stage == "compare":
        import io

        from matplotlib.figure import Figure  # as the stage draws: a Figure without pyplot

        Figure().savefig(io.BytesIO(), format="png")
        done("matplotlib")
        return phases
    if stage == "evaluate":
        import numpy as np

        from cifar10_tricks import cifar, predictions, provenance
        from stages import evaluate

        ds = cifar.load(data)
        pred = np.stack([ds.y_test, (ds.y_test + 1) % 10])  # two seeds' worth of predictions
        with tempfile.TemporaryDirectory() as tmp:
            predictions.write(
                Path(tmp) / "p.npz",
                (0, 1),
                ds.y_test,
                pred,
                np.ones(pred.shape, np.float32),
                ds.classes,
                dict.fromkeys(provenance.KEYS),  # evaluate copies it, reads none
            )
            # making the file (and importing torch for it) is the train stage's work
            done("bench set-up")
            p = predictions.read(Path(tmp) / "p.npz", "bench")
        done("load data")
        evaluate.score(p["y_true"], p["pred"][0], tuple(p["classes"].tolist()))
        done("first step")
        return phases
    import torch

    from cifar10_tricks import cifar, params
    from cifar10_tricks.device import configure_torch, pick_device, pick_precision
    from cifar10_tricks.model import ModelConfig

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
    from cifar10_tricks.step import fresh_stack, to_device

    tensors = to_device(ds, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    done("to device")
    stack = fresh_stack(
        ModelConfig(n_classes=len(ds.classes)), (0,), params.Variant(), tensors, precision
    )
    done("optimizer")
    stack.step(torch.arange(64, device=device).view(1, 64))
    stack.sums.tolist()
    done("first step")
    import dvclive  # noqa: F401

    done("dvclive")
    return phases


def stage_runs(repeats: int, root: Path) -> dict:
    """Each stage's own 'done in' time on tiny data, run as dvc.yaml runs it; medians."""
    from cifar10_tricks import cifar

    work = root / "tiny"
    work.mkdir(parents=True, exist_ok=True)
    archive = cifar.write_synthetic_archive(work / "a.tar.gz", 500, 100, seed=0)
    cifar.save(cifar.parse_archive(archive), work / "d.npz")
    (work / "stats.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}')
    text = Path("params.yaml").read_text()
    raw = yaml.safe_load(text)
    raw["train"].update({"epochs": 1, "seeds": [0]})
    raw["variants"] = {"baseline": raw["variants"]["baseline"]}
    raw["compare"]["parents"] = {}
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    train = [
        sys.executable,
        "-m",
        "stages.train",
        "--params",
        str(work / "params.yaml"),
        "--variant",
        "baseline",
        "--seeds",
        "0",
        "--data",
        str(work / "d.npz"),
        "--stats",
        str(work / "stats.json"),
        "--models",
        str(work / "models"),
        "--live",
        str(work / "runs/baseline/0/live"),
        "--predictions",
        str(work / "runs/baseline/0/predictions.npz"),
    ]
    evaluate = [
        sys.executable,
        "-m",
        "stages.evaluate",
        "--variant",
        "baseline",
        "--seeds",
        "0",
        "--predictions",
        str(work / "runs/baseline/0/predictions.npz"),
        "--live",
        str(work / "runs/baseline/0/live"),
        "--out",
        str(work / "results/baseline/0"),
    ]
    compare = [
        sys.executable,
        "-m",
        "stages.compare",
        "--params",
        str(work / "params.yaml"),
        "--results",
        str(work / "results"),
        "--out",
        str(work / "compare"),
    ]
    runs: dict[str, list[dict]] = {"train": [], "evaluate": [], "compare": []}
    for _ in range(repeats):
        for stage, cmd in (("train", train), ("evaluate", evaluate), ("compare", compare)):
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            done = parse_done(out.stderr)
            if out.returncode != 0 or not done:
                sys.exit(f"{stage} failed:\n{out.stderr}")
            # fixed: what the process costs beyond the stage's own work (start-up, imports,
            # teardown)
            runs[stage].append({"work": done[1], "wall": wall, "fixed": wall - done[1]})
    medians = _medians(runs)
    print(json.dumps(medians, indent=2))
    return {"median_s": medians, "runs": runs}


def _medians(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per stage, the median of each timed field over its runs (s, 3 decimals)."""
    return {
        s: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        for s, rs in runs.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--data",
        default="bench-out/bench-data.npz",
        help="a data file; made by benchmarks.bench_train if absent",
    )
    ap.add_argument("--out", default="bench-out/startup.json")
    ap.add_argument("--stages", action="store_true", help="time whole stage processes on tiny data")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data))))
        return
    if args.stages:
        with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
            write_report(
                Path(args.out).with_name("stages.json"), stage_runs(args.repeats, Path(tmp))
            )
        return

    synthetic_data(Path(args.data), 50000, 10000)  # made once, if absent
    runs: dict[str, list[dict]] = {s: [] for s in STAGES}
    for _ in range(args.repeats):
        for stage in STAGES:  # alternated, so machine noise hits every stage alike
            start = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_startup",
                    "--child",
                    stage,
                    "--data",
                    args.data,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - start
            if out.returncode != 0:
                sys.exit(f"{stage} failed:\n{out.stderr}")
            phases = json.loads(out.stdout.strip().splitlines()[-1])
            # The stage's total leaves out what only the benchmark does (evaluate's input file).
            runs[stage].append(
                {
                    "interpreter": wall - sum(phases.values()),
                    **phases,
                    "total": wall - phases.get("bench set-up", 0.0),
                }
            )
    report = write_report(
        args.out, {"repeats": args.repeats, "median_s": _medians(runs), "runs": runs}
    )
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
