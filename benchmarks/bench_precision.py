"""Benchmark: does bf16 autocast cost accuracy?  The same variants, seeds and data in fp32 and bf16.

    python -m benchmarks.bench_precision [--variants baseline,dropout_both] [--seeds 0,1,2]

Trains each variant of params.yaml once per seed and precision with the pipeline's own
trainer (stages.train.train_seeds, 10 epochs by default) on a full-size synthetic set
(noisier than the default, so it is not too easy), scores every final model in fp32 as the
evaluate stage does, and reports per variant and precision the mean and std of test
accuracy over seeds, and the difference bf16 - fp32 in points.
The issue's bar: |difference| <= 0.5 points.  Only meaningful where bf16 is native (a CUDA
GPU, or a CPU with AVX-512-BF16/AMX); elsewhere it is emulated and very slow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="baseline,dropout_both")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--noise",
        type=float,
        default=400.0,
        help="pixel noise of the synthetic set: 400 keeps accuracy well below 100%%, "
        "where a precision loss would show",
    )
    ap.add_argument(
        "--data",
        help="a data file (default: bench-out/bench-data-noise<noise>.npz, made if absent)",
    )
    ap.add_argument("--out", default="bench-out/precision.json")
    args = ap.parse_args()

    from benchmarks.common import synthetic_data, write_report
    from cifar10_tricks import params
    from cifar10_tricks.device import configure_torch, pick_device
    from cifar10_tricks.model import predict
    from cifar10_tricks.step import to_device
    from stages.stats import channel_stats
    from stages.train import model_config, train_seeds

    device = pick_device(args.device)
    configure_torch(device, deterministic=True)
    data_path = Path(args.data or f"bench-out/bench-data-noise{args.noise:g}.npz")
    ds = synthetic_data(data_path, 50000, 10000, args.noise)
    mean, std = channel_stats(ds.x_train)
    data = to_device(ds, device)
    p = params.load("params.yaml")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    tp = params.TrainParams(epochs=args.epochs, seeds=seeds)  # each seed a block of its own
    runs = []
    for name in args.variants.split(","):
        variant = p.variants[name]
        config = model_config(variant, {"mean": mean, "std": std}, ds.classes)
        for seed in tp.all_seeds:
            for precision in ("fp32", "bf16"):  # alternated, seed by seed
                start = time.perf_counter()
                model, _, _ = train_seeds(name, variant, config, data, (seed,), tp, precision)
                acc = (
                    (predict(model, data.x_test, "fp32")[0].argmax(1) == data.y_test)
                    .float()
                    .mean()
                    .item()
                )
                runs.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "precision": precision,
                        "test_acc": acc,
                        "seconds": time.perf_counter() - start,
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for name in args.variants.split(","):
        row = {}
        for precision in ("fp32", "bf16"):
            mine = [r for r in runs if r["variant"] == name and r["precision"] == precision]
            accs = [r["test_acc"] for r in mine]
            row[precision] = {
                "mean": statistics.mean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "median_seconds": statistics.median(r["seconds"] for r in mine),
            }
        row["bf16_minus_fp32_points"] = 100 * (row["bf16"]["mean"] - row["fp32"]["mean"])
        row["within_half_a_point"] = abs(row["bf16_minus_fp32_points"]) <= 0.5
        summary[name] = row
    report = {
        "device": str(device),
        "epochs": args.epochs,
        "noise": args.noise,
        "seeds": list(tp.all_seeds),
        "summary": summary,
        "runs": runs,
    }
    write_report(args.out, report)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
