"""The GPU check: one prepared command for a lent GPU, which runs on a CPU too (``--quick``).

    python -m benchmarks.gpu_check --out bench-out/gpu                   # on a GPU, < 10 min
    python -m benchmarks.gpu_check --out bench-out/gpu --parts first     # the first 4 min only
    python -m benchmarks.gpu_check --out DIR --quick                     # every part, tiny, CPU

Parts, in order, each in a process of its own within a hard time budget (``BUDGET_S``): past
it the part's whole process group is killed and what it printed is kept; a part that fails
(no git, no DVC, an import) is named in the report and the others still run; the report is
rewritten as each part ends; the command exits 1 (after writing it) when any part failed:

  first     what matters most: the trainer's epoch and step time at S = 1 and S = 10 seeds
            for baseline, dropout_both and the slide's knobs on the GPU's path (full_tanh,
            full_momentum); then a stacked seed ends where it ends alone (same layout), the
            graphed step ends where the eager one does (fp32), the lr the graph reads decays
            each epoch, 10 seeds trained twice are bitwise equal; evaluation in batches of 256
            against the device's own size
  tests     the CUDA-only tests (pytest): passed, failed, or skipped (a failure on a GPU)
  step      one training step (forward, backward, Adam) of S = 1 and S = 10 seeds, ms per
            step, for each memory layout (NCHW, channels_last) x deterministic on/off x way
            (``trainer``: the stage's own step from cifar10_tricks.step.fresh_stack,
            replayed from a CUDA graph on CUDA; ``grouped``, ``vmap``, ``sequential``:
            benchmarks.bench_stack's); per conv layer of the stack of 10, forward /
            input-gradient / weight-gradient time in each layout; the kernels torch.profiler
            sees over 5 steps of the default step, after its graph was captured
  train     ``bench_train --modes none --seeds 1,3,10`` (50,000/10,000 images, 10 epochs)
  pipeline  ``bench_pipeline`` to ``compare``: 2 variants x 10 seeds x 1 epoch, full size

Writes ``gpu_check.json`` and ``gpu_check.md`` in ``--out``, naming the GPU, driver, torch,
CUDA and cuDNN.  DVC's stages run with the interpreter that runs this (first on PATH as
``python``), whatever ``python`` the machine has.  The GPU machine has torch but not DVC:
``benchmarks/gpu_wheels.sh`` fetches the wheels to carry there, which every part needs
(``params.load`` reads params.yaml with ruamel.yaml): docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, write_report
from cifar10_tricks.testing import run_env

CUDA_TESTS = ["tests/test_train.py::test_cuda_graphs_train_like_eager_and_repeat_exactly"]
# Each part's hard limit, seconds, the report written after each part; a part past it is killed
# with its whole process group.  From the H100's figures (docs/performance.md): one seed's 10
# epochs of 50,000 images took 4.2 s and a process's start-up 2-8 s.  first: 4 variants x
# S = 1, 10 x 2 epochs of 10,000 images (~1 s each, capture included) and the checks, in all
# well under 2 min, so 4 min leaves room for a slower GPU; tests: one test, seconds; step: 2 x
# 2 x 2 x 4 step timings of 50 steps and 15 profiled kernels; train: 3 processes of 10 epochs
# at full size (~5-20 s of training each); pipeline: 2 variants x 10 seeds x 1 epoch, 5 stage
# processes (it was 160 s for 8 variants x 1 seed x 10 epochs, 17 processes).  10 min in all.
BUDGET_S = {"first": 240, "tests": 60, "step": 90, "train": 120, "pipeline": 120}


def gpu_info() -> dict:
    """The GPU, its driver, and the CUDA and cuDNN torch runs on (empty on a CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    info = {
        "gpu": torch.cuda.get_device_name(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    return info


# --- tests ----------------------------------------------------------------------------


def part_tests(quick: bool, device) -> dict:
    """The CUDA-only tests, by pytest: passed, failed, or skipped (no CUDA here), said as such."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout.strip() or proc.stderr[-500:]
    summary = out.splitlines()[-1] if out else ""
    if proc.returncode == 0 and "passed" in summary:
        status = "passed"
    elif proc.returncode == 0 and "skipped" in summary:
        status = "skipped"
    else:
        status = "failed"
    return {"pytest_exit": proc.returncode, "pytest": summary, "cuda_tests": status}


# --- first: what matters most, in its first minutes --------------------------------------

# The variants the first part times: the blog's baseline and its dropout rung, and the slide's
# knobs that reach the GPU's step (tanh under the hashed masks, SGD's momentum in the graph).
FIRST_VARIANTS = ("baseline", "dropout_both", "full_tanh", "full_momentum")


def part_first(quick: bool, device) -> dict:
    """The trainer's epoch and step time at S = 1 and S = 10 seeds for FIRST_VARIANTS, then the
    checks that say the GPU path is right: a stacked seed ends where it ends alone (same
    layout), the graphed step ends where the eager one does (fp32), the lr the step reads decays
    each epoch, one variant's seeds trained twice are bitwise equal; and evaluation in batches
    of 256 against the device's own size (:data:`cifar10_tricks.model.EVAL_BATCH`)."""
    import numpy as np

    from benchmarks.common import synthetic_data
    from cifar10_tricks import params
    from cifar10_tricks.step import to_device
    from stages.train import model_config, train_seeds

    n_train, n_test, sizes = (300, 100, (1, 2)) if quick else (10000, 2000, (1, 10))
    ds = synthetic_data(ROOT / "bench-out" / f"gpu-check-{n_train}.npz", n_train, n_test)
    data = to_device(ds, device)
    p = params.load(ROOT / "params.yaml")
    stats = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
    precision = "bf16" if device.type == "cuda" else "fp32"
    tp = params.TrainParams(epochs=2, seeds=("0",), deterministic=True)
    rows = []
    for name in FIRST_VARIANTS:
        variant = p.variants[name]
        config = model_config(variant, stats, ds.classes)
        for n in sizes:
            seconds = []

            def seen(seed, epoch, row, took, seconds=seconds):
                if seed == 0:
                    seconds.append(took)

            seeds = tuple(range(n))
            train_seeds(name, variant, config, data, seeds, tp, precision, seen)
            steps = -(-n_train // variant.batch_size)
            rows.append(
                {
                    "variant": name,
                    "seeds": n,
                    "first_epoch_s": seconds[0],  # graph capture and warm-up in it
                    "epoch_s": seconds[1],
                    "ms_per_step": 1000 * seconds[1] / steps,  # the epoch's test pass included
                }
            )
    dropout_both = p.variants["dropout_both"]
    config = model_config(dropout_both, stats, ds.classes)
    tp_repeat = params.TrainParams(epochs=1, seeds=(f"0-{sizes[-1] - 1}",), deterministic=True)
    runs = [
        train_seeds("check", dropout_both, config, data, tp_repeat.all_seeds, tp_repeat, precision)[
            2
        ]
        for _ in range(2)
    ]
    checks = _checks(dropout_both, config, data, device)
    checks["bitwise_repeat"] = {
        "ok": all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1])),
        "what": f"dropout_both, {sizes[-1]} seeds x 1 epoch x {n_train:,} images, trained "
        "twice: identical predictions and losses",
    }
    return {
        "precision": precision,
        "n_train": n_train,
        "rows": rows,
        "checks": checks,
        "evaluation": _eval_times(config, data, sizes[-1], device, precision),
    }


def _eval_times(config, data, n_seeds: int, device, precision: str) -> dict:
    """ms to predict the test split with a stack of ``n_seeds``, in batches of 256 and of the
    device's own size."""
    import torch

    from cifar10_tricks.model import EVAL_BATCH, Net, predict

    model = Net(config, tuple(range(n_seeds))).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    for batch in sorted({256, EVAL_BATCH.get(device.type, 256)}):
        out[f"batch_{batch}_ms"] = _timed(
            lambda b=batch: predict(model, data.x_test, precision, b), sync, 3, 1
        )
    return out


def _checks(variant, config, data, device) -> dict:
    """On this device, in fp32, 20 steps of batch 8 with dropout_both: (a) seed 1 in a stack of
    3 ends where it ends alone, in the same memory layout; (b) the CUDA-graphed step ends where
    the eager one does (the largest difference, and whether it is none at all); (c) the lr the
    step reads (on CUDA the device tensor the graph reads) is lr * gamma^k after epoch k."""
    import dataclasses
    from unittest import mock

    import torch

    from cifar10_tricks import optim, params
    from cifar10_tricks.device import memory_format
    from cifar10_tricks.model import Net
    from stages.train import train_seeds

    small = dataclasses.replace(data, x_train=data.x_train[:160], y_train=data.y_train[:160])
    tp = params.TrainParams(epochs=1, seeds=(0, 1, 2), deterministic=True)
    variant = dataclasses.replace(variant, batch_size=8)

    def gap(a, b) -> float:
        return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))

    def close(a, b) -> bool:
        return all(
            torch.allclose(x, y, rtol=1e-4, atol=3e-5)
            for x, y in zip(a.parameters(), b.parameters())
        )

    def train(seeds, **kw):
        return train_seeds("check", variant, config, small, seeds, tp, "fp32", **kw)[0]

    # Like with like: seed 1 alone in the layout the stack of 3 trains in (on CUDA a stack is
    # NCHW and a single model channels_last; the layouts' kernels round differently).
    stack_layout = memory_format(device, 3)
    with mock.patch("cifar10_tricks.step.memory_format", lambda device, n: stack_layout):
        alone = train((1,)).single(0)
    stack = train((0, 1, 2)).single(1)
    # A stack's grouped convolutions sum in another order than one seed's plain ones, so the
    # two differ by rounding; Adam divides each gradient by its running RMS, so a rounding-level
    # difference in a near-zero gradient can move a weight by up to lr per step.  The gap is
    # therefore judged against how far training moved the weights (1% of it), not absolutely:
    # an absolute 3e-5 failed on an AVX2 EPYC at 3.75e-5, 0.1% of the movement.
    moved = gap(alone, Net(config, (1,)))
    out = {
        "stacked_equals_alone": {
            "ok": gap(alone, stack) <= 0.01 * moved,
            "max_abs_diff": gap(alone, stack),
            "max_moved_by_training": moved,
            "what": "seed 1 of a stack of 3 vs seed 1 alone in the same layout, 20 steps with "
            "dropout, fp32 (within 1% of how far training moved the weights)",
        }
    }
    if device.type == "cuda":
        graphed, eager = train((0, 1, 2)), train((0, 1, 2), cuda_graphs=False)
        out["graphed_equals_eager"] = {
            "ok": close(graphed, eager),
            "bitwise": gap(graphed, eager) == 0,
            "max_abs_diff": gap(graphed, eager),
            "what": "3 stacked seeds, 20 steps with dropout, fp32, graphed vs eager "
            "(tolerance rtol 1e-4, atol 3e-5)",
        }
    else:
        out["graphed_equals_eager"] = {"ok": True, "what": "not run: no CUDA graphs off CUDA"}
    seen, decay = [], optim.Adam.decay

    def recorded(self):
        decay(self)
        seen.append(self.lr_tensor.item() if self.lr_tensor is not None else self.lr)

    optim.Adam.decay = recorded
    try:
        train_seeds(
            "check", variant, config, small, (0,), dataclasses.replace(tp, epochs=3), "fp32"
        )
    finally:
        optim.Adam.decay = decay
    want = [variant.lr * variant.lr_decay**k for k in (1, 2, 3)]
    out["lr_decays"] = {
        "ok": all(abs(a - b) <= 1e-6 * b for a, b in zip(seen, want)) and len(seen) == 3,
        "lr_after_each_epoch": seen,
        "what": "the lr the step reads"
        + (" (Adam's lr tensor, which the graph reads)" if device.type == "cuda" else "")
        + f" after epochs 1-3, against {variant.lr} x {variant.lr_decay}^k",
    }
    return out


# --- one step -------------------------------------------------------------------------


def _timed(step, sync, rounds: int, steps: int) -> float:
    """Median ms per call of ``step`` over ``rounds`` of ``steps`` calls, after a warm-up."""
    for _ in range(3):
        step()
    times = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times)


def _trainer_step(n_seeds: int, device, precision: str, layout):
    """The stage's own step (graphed on CUDA) over random uint8 images, as a no-argument call."""
    from unittest import mock

    import torch

    from cifar10_tricks import params
    from cifar10_tricks.model import ModelConfig
    from cifar10_tricks.step import Tensors, fresh_stack

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64 * 8, 32, 32, 3), dtype=torch.uint8, generator=g)
    data = Tensors(
        x.permute(0, 3, 1, 2).to(device),
        torch.randint(0, 10, (64 * 8,)).to(device),
        x[:64].permute(0, 3, 1, 2).to(device),
        torch.zeros(64, dtype=torch.long).to(device),
    )
    # The layout under test in place of the one the product picks (device.memory_format).
    with mock.patch("cifar10_tricks.step.memory_format", lambda device, n: layout):
        t = fresh_stack(
            ModelConfig(init="kaiming_uniform"),
            tuple(range(n_seeds)),
            params.Variant(lr=2e-3),
            data,
            precision,
        )
    idx = torch.stack([torch.randperm(64 * 8, generator=g)[:64] for _ in range(n_seeds)]).to(device)
    return lambda: t.step(idx)


def _layer_times(n_seeds: int, device, precision: str, layout, sync, rounds: int) -> list[dict]:
    """Per conv layer of a stack of ``n_seeds``: forward, input-gradient, weight-gradient ms."""
    import torch
    from torch.nn import functional as F

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    rows = []
    for name, (c_in, c_out, hw) in {
        "conv1": (3, 32, 32),
        "conv2": (32, 64, 15),
        "conv3": (64, 64, 6),
    }.items():
        x = torch.randn(64, n_seeds * c_in, hw, hw, device=device, dtype=dtype)
        x = x.contiguous(memory_format=layout)
        w = torch.randn(n_seeds * c_out, c_in, 3, 3, device=device, dtype=dtype)
        w = w.contiguous(memory_format=layout)
        out = F.conv2d(x, w, groups=n_seeds)
        grad = torch.randn_like(out)

        def backward(mask, x=x, w=w, grad=grad, bias=(n_seeds * c_out,)):
            one, none = [1, 1], [0, 0]  # stride and dilation; padding and output padding
            return torch.ops.aten.convolution_backward(
                grad, x, w, list(bias), one, none, one, False, none, n_seeds, mask
            )

        rows.append(
            {
                "layer": name,
                "forward_ms": _timed(
                    lambda x=x, w=w: F.conv2d(x, w, groups=n_seeds), sync, rounds, 5
                ),
                "input_grad_ms": _timed(lambda: backward([True, False, False]), sync, rounds, 5),
                "weight_grad_ms": _timed(lambda: backward([False, True, False]), sync, rounds, 5),
            }
        )
    return rows


def _kernels(step, device) -> list[dict]:
    """The 15 kernels (CUDA) or ops (CPU) with the most self time over 5 steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step()  # outside the profile: on CUDA the first call captures the graph (3 warm-up steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(5):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:15]
    return [{"name": e.key, "calls": e.count, "self_ms": getattr(e, key, 0) / 1000} for e in events]


def part_step(quick: bool, device) -> dict:
    import torch

    from benchmarks.bench_stack import WAYS, build
    from cifar10_tricks.device import configure_torch, memory_format

    precision = "bf16" if device.type == "cuda" else "fp32"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rounds, steps = (1, 1) if quick else (5, 10)
    sizes = (1, 2) if quick else (1, 10)
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    rows = []
    for deterministic in (True, False):
        configure_torch(device, deterministic)
        for n in sizes:
            for layout_name, layout in layouts.items():
                for way in ("trainer", *WAYS):
                    if way == "vmap" and layout_name == "channels_last":
                        continue  # vmap's stacked 5-d weights have no channels_last
                    step = (
                        _trainer_step(n, device, precision, layout)
                        if way == "trainer"
                        else build(way, n, device, precision=precision, layout=layout)[0]
                    )
                    rows.append(
                        {
                            "seeds": n,
                            "layout": layout_name,
                            "deterministic": deterministic,
                            "way": way,
                            "ms_per_step": _timed(step, sync, rounds, steps),
                        }
                    )
                    rows[-1]["images_per_s_per_model"] = 64 * 1000 / rows[-1]["ms_per_step"]
    configure_torch(device, deterministic=True)
    n = sizes[-1]
    default = memory_format(device, n)
    layers = {
        name: _layer_times(n, device, precision, layout, sync, rounds)
        for name, layout in layouts.items()
    }
    kernels = _kernels(_trainer_step(n, device, precision, default), device)
    return {
        "precision": precision,
        "default_layout": "nchw" if default == torch.contiguous_format else "channels_last",
        "rows": rows,
        "layers": layers,
        "kernels": kernels,
    }


# --- the benchmarks, as processes -------------------------------------------------------


def _bench(module: str, args: list[str], out: Path, budget: float) -> dict:
    """Run ``benchmarks.<module>`` for at most ``budget`` seconds; its report without the raw
    runs, or the error it ended in."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *args, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=budget,
            env=run_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"ran past its budget of {budget:.0f} s"}
    if proc.returncode != 0:
        return {"error": " ".join(proc.stderr.strip().splitlines()[-3:])}
    return {k: v for k, v in json.loads(out.read_text()).items() if k != "runs"}


def part_train(quick: bool, out: Path, budget: float) -> dict:
    sizes = (
        ["--n-train", "500", "--n-test", "100", "--epochs", "1", "--seeds", "1,2"]
        if quick
        else ["--n-train", "50000", "--n-test", "10000", "--epochs", "10", "--seeds", "1,3,10"]
    )
    return _bench(
        "bench_train",
        [
            "--modes",
            "none",
            "--repeats",
            "1",
            *sizes,
            "--data",
            str(out / f"train-data-{sizes[1]}.npz"),
        ],
        out / "train.json",
        budget,
    )


def part_pipeline(quick: bool, out: Path, budget: float) -> dict:
    try:
        import dvc  # noqa: F401
    except ImportError:
        return {"error": "no DVC here: carry gpu_wheels.sh's wheels (docs/performance.md)"}
    sizes = (
        [
            "--n-train",
            "300",
            "--n-test",
            "100",
            "--epochs",
            "1",
            "--seeds",
            "0-1",
            "--variants",
            "baseline,norm_inputs",
        ]
        if quick
        else ["--epochs", "1", "--variants", "baseline,dropout_both"]
    )
    return _bench("bench_pipeline", [*sizes, "--targets", "compare"], out / "pipeline.json", budget)


# --- the report -------------------------------------------------------------------------


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# GPU check ({'quick, ' if report['quick'] else ''}{m.get('gpu', m['cpu'])})",
        "",
        f"Commit {report['commit']}{' (dirty)' if report['dirty'] else ''}; "
        f"torch {m.get('torch')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, driver "
        f"{report.get('gpu', {}).get('driver')}; `{report['command']}`.",
        "",
    ]
    parts = report["parts"]
    if "first" in parts and "error" not in parts["first"]:
        f = parts["first"]
        lines += [
            "## First: the trainer's step, and the checks",
            "",
            f"{f['precision']}, {f['n_train']:,} images, batch per variant; the second epoch's "
            "time (the first pays the warm-up and the graph's capture).",
            "",
            "| variant | seeds | first epoch s | epoch s | ms/step |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['variant']} | {r['seeds']} | {r['first_epoch_s']:.2f} | {r['epoch_s']:.2f} | "
            f"{r['ms_per_step']:.2f} |"
            for r in f["rows"]
        ]
        lines.append("")
        lines += [
            f"- {name}: **{'ok' if c['ok'] else 'FAILED'}**"
            + (f", largest difference {c['max_abs_diff']:.3g}" if "max_abs_diff" in c else "")
            + (", bitwise" if c.get("bitwise") else "")
            + f" ({c['what']})"
            for name, c in f["checks"].items()
        ]
        lines += ["", f"- evaluation of the test split: {f['evaluation']}", ""]
    if "tests" in parts and "error" not in parts["tests"]:
        t = parts["tests"]
        lines += [
            "## CUDA-only tests",
            "",
            f"**{t['cuda_tests']}**: `{t['pytest']}` (exit {t['pytest_exit']})",
            "",
        ]
    if "step" in parts and "error" not in parts["step"]:
        s = parts["step"]
        lines += [
            "## One step",
            "",
            f"{s['precision']}, batch 64; default layout for the stack: {s['default_layout']}.",
            "",
            "| seeds | layout | deterministic | way | ms/step | img/s per model |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['seeds']} | {r['layout']} | {r['deterministic']} | {r['way']} | "
            f"{r['ms_per_step']:.2f} | {r['images_per_s_per_model']:,.0f} |"
            for r in s["rows"]
        ]
        lines += [
            "",
            "| layout | layer | forward ms | input grad ms | weight grad ms |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name} | {r['layer']} | {r['forward_ms']:.3f} | {r['input_grad_ms']:.3f} | "
            f"{r['weight_grad_ms']:.3f} |"
            for name, rows in s["layers"].items()
            for r in rows
        ]
        lines += ["", "| kernel | calls | self ms (5 steps) |", "| --- | --- | --- |"]
        lines += [
            f"| `{k['name'][:90]}` | {k['calls']} | {k['self_ms']:.2f} |" for k in s["kernels"]
        ]
        lines.append("")
    for name in ("train", "pipeline"):
        if name in parts:
            lines += [
                f"## {name}",
                "",
                "```json",
                json.dumps(parts[name], indent=1)[:6000],
                "```",
                "",
            ]
    failed = failures(report)
    if failed:
        lines += ["## Failed", ""] + [f"- {k}: {v}" for k, v in failed.items()]
    return "\n".join(lines) + "\n"


def failures(report: dict) -> dict[str, str]:
    """Each part that failed, and why: an error, a failed check, or failed CUDA tests."""
    out = {name: part["error"] for name, part in report["parts"].items() if "error" in part}
    first = report["parts"].get("first", {})
    bad = [name for name, c in first.get("checks", {}).items() if not c["ok"]]
    if bad:
        out["first"] = "failed: " + ", ".join(bad)
    tests = report["parts"].get("tests", {})
    # Skipped is a failure only where CUDA is there to run them.
    if tests.get("cuda_tests") == "failed" or (
        tests.get("cuda_tests") == "skipped" and report.get("gpu")
    ):
        out["tests"] = f"CUDA-only tests {tests['cuda_tests']} ({tests['pytest']})"
    return out


PARTS = ("first", "tests", "step", "train", "pipeline")


def run_part(
    name: str, quick: bool, out: Path, budget: float, command: list[str] | None = None
) -> dict:
    """Part ``name`` in a process of its own, in a session of its own: past ``budget`` seconds
    its whole process group is killed (training processes and DVC's stages included, which
    would otherwise keep the GPU busy in the next part), and what it printed is kept."""
    import os

    result = out / f"part-{name}.json"
    result.unlink(missing_ok=True)
    if command is None:
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, "--out", str(out)]
        command += ["--quick"] if quick else []
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=run_env(),
    )
    try:
        printed, _ = proc.communicate(timeout=budget)
        timed_out = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        printed, _ = proc.communicate()
        timed_out = True
    tail = printed[-3000:]
    if result.is_file():
        report = json.loads(result.read_text())
    elif timed_out:
        report = {"error": f"ran past its budget of {budget:.0f} s; killed with its children"}
    else:
        last = [line for line in printed.strip().splitlines() if line.strip()][-1:]
        report = {"error": f"exited {proc.returncode}: {' '.join(last) or 'no output'}"}
    if "error" in report or timed_out:
        report["output"] = tail
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out/gpu")
    ap.add_argument("--quick", action="store_true", help="every part on tiny sizes (a CPU's test)")
    ap.add_argument(
        "--parts", default=",".join(PARTS), help="which parts, in order: " + ", ".join(PARTS)
    )
    ap.add_argument("--part", help=argparse.SUPPRESS)  # one part, in its own process
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part:
        return _one_part(args.part, args.quick, out)
    report = {"quick": args.quick, "parts": {}, "seconds": {}}
    with contextlib.suppress(Exception):  # no torch at all: the parts will say so
        report["gpu"] = gpu_info()
    for name in args.parts.split(","):
        start = time.perf_counter()
        if name not in PARTS:
            report["parts"][name] = {"error": f"no part {name!r}; parts: {', '.join(PARTS)}"}
        else:
            report["parts"][name] = run_part(name, args.quick, out, BUDGET_S[name])
        report["seconds"][name] = round(time.perf_counter() - start, 1)
        full = _write(out, report)
        print(f"{name}: {report['seconds'][name]} s", flush=True)
    failed = failures(full)
    for name, why in failed.items():
        print(f"error: gpu_check part {name!r}: {why}", file=sys.stderr)
    sys.exit(1 if failed else 0)


def _write(out: Path, report: dict) -> dict:
    """gpu_check.json and gpu_check.md, rewritten after every part; a report with the machine
    even where a part could not import torch."""
    try:
        full = write_report(out / "gpu_check.json", report)
    except Exception as exc:  # the machine's own description failed: keep the parts anyway
        full = {**report, "machine": {"cpu": "?", "error": str(exc)}, "commit": None}
        full["dirty"], full["command"] = False, "python -m benchmarks.gpu_check"
        (out / "gpu_check.json").write_text(json.dumps(full, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(full))
    return full


def _one_part(name: str, quick: bool, out: Path) -> None:
    """Run one part in this process and write its figures to ``part-<name>.json``."""
    from cifar10_tricks.device import configure_torch, pick_device

    device = pick_device("cpu" if quick else "auto")
    configure_torch(device, deterministic=True)
    runners = {
        "first": lambda: part_first(quick, device),
        "tests": lambda: part_tests(quick, device),
        "step": lambda: part_step(quick, device),
        "train": lambda: part_train(quick, out, BUDGET_S["train"] - 10),
        "pipeline": lambda: part_pipeline(quick, out, BUDGET_S["pipeline"] - 10),
    }
    result = runners[name]()
    (out / f"part-{name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
