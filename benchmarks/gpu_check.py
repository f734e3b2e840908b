"""The GPU check: one prepared command for a lent GPU, which runs on a CPU too (``--quick``).

    python -m benchmarks.gpu_check --out bench-out/gpu                   # on a GPU, < 8 min
    python -m benchmarks.gpu_check --out DIR --quick                     # every part, tiny, CPU

Parts, in order, each within a hard time budget (``BUDGET_S``, 8 minutes in all); the report
is rewritten as each ends, so a time-out keeps what was measured, and the command exits 1
(after writing it) when any part failed:

  tests     the CUDA-only tests (pytest; skipped, and said so, without CUDA), a bitwise
            repeat (one variant's 10 seeds trained twice under ``deterministic: true``) and
            three checks on the device: a stacked seed with dropout ends where it ends
            alone; the graphed step ends where the eager one does, in fp32 (with the
            largest difference); the lr the graph reads decays each epoch
  step      one training step (forward, backward, Adam) of S = 1 and S = 10 seeds, ms per
            step, for each memory layout (NCHW, channels_last) x deterministic on/off x way
            (``trainer``: the stage's own step from cifar10_tricks.step.fresh_stack,
            replayed from a CUDA graph on CUDA; ``grouped``, ``vmap``, ``sequential``:
            benchmarks.bench_stack's);
            per conv layer of the stack of 10, forward / input-gradient / weight-gradient
            time in each layout; the kernels torch.profiler sees over 5 steps of the
            default step, after its graph was captured
  train     ``bench_train --modes none --seeds 1,3,10`` (50,000/10,000 images, 10 epochs)
  pipeline  ``bench_pipeline`` to ``compare`` (8 variants x 10 seeds x 10 epochs, full size;
            download, stats and the page stage excluded)

Writes ``gpu_check.json`` and ``gpu_check.md`` in ``--out``, naming the GPU, driver, torch,
CUDA and cuDNN.  DVC's stages run with the interpreter that runs this (first on PATH as
``python``), whatever ``python`` the machine has.  The GPU machine has torch but not DVC:
``benchmarks/gpu_wheels.sh`` fetches the wheels to carry there (docs/performance.md).
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
# Each part's hard limit, seconds: 8 minutes in all, the report written after each part.
BUDGET_S = {"tests": 100, "step": 120, "train": 140, "pipeline": 120}


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


def part_tests(quick: bool, device, budget: float) -> dict:
    """The CUDA-only tests, two runs of one variant's seeds compared bit for bit, and three
    checks of the trainer on this device (:func:`_checks`)."""
    import numpy as np

    from benchmarks.common import synthetic_data
    from cifar10_tricks import params
    from cifar10_tricks.device import configure_torch
    from cifar10_tricks.step import to_device
    from stages.train import model_config, train_seeds

    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=budget / 2,
        )
        exit_code, out = proc.returncode, proc.stdout.strip() or proc.stderr[-500:]
    except subprocess.TimeoutExpired:
        exit_code, out = None, f"timed out after {budget / 2:.0f} s"
    summary = out.splitlines()[-1] if out else ""
    configure_torch(device, deterministic=True)
    n_train, n_test, seeds, epochs = (300, 100, 3, 1) if quick else (10000, 2000, 10, 2)
    ds = synthetic_data(ROOT / "bench-out" / f"gpu-check-{n_train}.npz", n_train, n_test)
    data = to_device(ds, device)
    variant = params.load(ROOT / "params.yaml").variants["dropout_both"]
    config = model_config(variant, {"mean": (0.5,) * 3, "std": (0.25,) * 3}, ds.classes)
    tp = params.TrainParams(epochs=epochs, seeds=(f"0-{seeds - 1}",), deterministic=True)
    with _deadline(budget - (time.perf_counter() - start)):
        runs = [
            train_seeds(
                "check",
                variant,
                config,
                data,
                tp.all_seeds,
                tp,
                "bf16" if device.type == "cuda" else "fp32",
            )[2]
            for _ in range(2)
        ]
        checks = _checks(variant, config, data, device)
    same = all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    checks["bitwise_repeat"] = {
        "ok": same,
        "what": f"dropout_both, {seeds} seeds x {epochs} epoch(s) x {n_train:,} images, trained "
        "twice: identical predictions and losses",
    }
    return {"pytest_exit": exit_code, "pytest": summary, "checks": checks}


def _checks(variant, config, data, device) -> dict:
    """On this device, in fp32, 20 steps of batch 8 with dropout_both: (a) seed 1 in a stack of
    3 ends where it ends alone; (b) the CUDA-graphed step ends where the eager one does (the
    largest difference, and whether it is none at all); (c) the lr the step reads (on CUDA the
    device tensor the graph reads) is lr * gamma^k after epoch k."""
    import dataclasses

    import torch

    from cifar10_tricks import optim, params
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

    from cifar10_tricks.model import Net

    alone, stack = train((1,)).single(0), train((0, 1, 2)).single(1)
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
            "what": "seed 1 of a stack of 3 vs seed 1 alone, 20 steps with dropout, fp32 "
            "(within 1% of how far training moved the weights)",
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


class PartTimeout(Exception):
    """A part ran past its share of the check's time budget."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise PartTimeout in this (main) thread once ``seconds`` have passed."""

    def expired(signum, frame):
        raise PartTimeout(f"ran past its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        else []
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
    if "tests" in parts and "error" not in parts["tests"]:
        t = parts["tests"]
        lines += [
            "## Tests and checks",
            "",
            f"- CUDA-only tests: `{t['pytest']}` (exit {t['pytest_exit']})",
        ]
        lines += [
            f"- {name}: **{'ok' if c['ok'] else 'FAILED'}**"
            + (f", largest difference {c['max_abs_diff']:.3g}" if "max_abs_diff" in c else "")
            + (", bitwise" if c.get("bitwise") else "")
            + f" ({c['what']})"
            for name, c in t["checks"].items()
        ]
        lines.append("")
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
    tests = report["parts"].get("tests", {})
    if "checks" in tests:
        bad = [name for name, c in tests["checks"].items() if not c["ok"]]
        if tests["pytest_exit"] != 0:
            bad.insert(0, f"CUDA-only tests ({tests['pytest']})")
        if bad:
            out["tests"] = "failed: " + ", ".join(bad)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out/gpu")
    ap.add_argument("--quick", action="store_true", help="every part on tiny sizes (a CPU's test)")
    ap.add_argument("--parts", default="tests,step,train,pipeline")
    args = ap.parse_args()

    from cifar10_tricks.device import pick_device

    device = pick_device("cpu" if args.quick else "auto")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": args.quick,
        "device": str(device),
        "gpu": gpu_info(),
        "parts": {},
        "seconds": {},
    }
    runners = {
        "tests": lambda budget: part_tests(args.quick, device, budget),
        "step": lambda budget: _within(budget, lambda: part_step(args.quick, device)),
        "train": lambda budget: part_train(args.quick, out, budget),
        "pipeline": lambda budget: part_pipeline(args.quick, out, budget),
    }
    for name in args.parts.split(","):
        start = time.perf_counter()
        try:
            report["parts"][name] = runners[name](BUDGET_S[name])
        except Exception as exc:  # a part that fails must not lose the others' figures
            report["parts"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        report["seconds"][name] = round(time.perf_counter() - start, 1)
        full = write_report(out / "gpu_check.json", report)
        (out / "gpu_check.md").write_text(markdown(full))
        print(f"{name}: {report['seconds'][name]} s", flush=True)
    failed = failures(report)
    for name, why in failed.items():
        print(f"error: gpu_check part {name!r}: {why}", file=sys.stderr)
    sys.exit(1 if failed else 0)


def _within(budget: float, run):
    with _deadline(budget):
        return run()


if __name__ == "__main__":
    main()
