"""Benchmark: the whole `dvc repro` on a full-size synthetic CIFAR-10, wall time and peak RSS.

    python -m benchmarks.bench_pipeline [--seeds 0] [--epochs 10] [--n-train 50000]

Copies the project into a temporary git repository (as the end-to-end tests do), points it
at a synthetic archive of CIFAR-10's real size, runs `dvc repro download stats` (untimed:
generating 60,000 images is not part of training), then times `dvc repro` of everything
else: 8 variants' train and evaluate stages, process start-up included.  Peak RSS is the
largest of any process the run waited for (an upper bound for a train stage).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from tests.dvc_project import make_project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--out", default="bench-out/pipeline.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        proj = make_project(Path(tmp), n_train=args.n_train, n_test=args.n_test)
        raw = proj.params()
        raw["train"].update({"epochs": args.epochs, "seeds": [int(s) for s in args.seeds.split(",")]})
        proj.set_params(raw)
        proj.commit("benchmark")
        start = time.perf_counter()
        proj.dvc("repro", "download", "stats")
        data_s = time.perf_counter() - start
        start = time.perf_counter()
        out = proj.dvc("repro")
        seconds = time.perf_counter() - start
        metrics = {p.parent.name: json.loads(p.read_text())["micro_f1"]
                   for p in sorted(Path(tmp, "results").glob("*/metrics.json"))}
    report = {"seconds_train_evaluate": seconds, "seconds_download_stats": data_s,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
              "epochs": args.epochs, "seeds": args.seeds, "n_train": args.n_train, "micro_f1": metrics,
              "stages_run": out.stdout.count("Running stage")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
