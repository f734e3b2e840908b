"""Benchmark: the whole `dvc repro` on a full-size synthetic CIFAR-10, wall time, peak RSS, and
where the time goes, stage by stage.

    python -m benchmarks.bench_pipeline [--seeds 0-2] [--epochs 10] [--n-train 50000]

Copies the project into a temporary git repository (as the end-to-end tests do), points it
at a synthetic archive of CIFAR-10's real size, runs `dvc repro download stats` (timed apart:
generating 60,000 images is not part of training), then times `dvc repro` of everything
else: 8 variants' train and evaluate stages and compare, process start-up included.

The breakdown comes from the run's own output, read line by line as it arrives:
  wall      from DVC's "Running stage" line to the next one (DVC's own work included)
  work      the stage's own work after its imports, from its "<stage> done in" line
  training  for train stages, the sum of the per-epoch times (training + per-epoch evaluation)
  overhead  wall - work: the interpreter's start-up, the imports (torch, scikit-learn, ...),
            the teardown and DVC's own share of the stage
Peak RSS is the largest of any process the run waited for (an upper bound for a train stage).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import parse_done, write_report
from cifar10_tricks.testing import make_project, run_env

RUNNING = re.compile(r"Running stage '([^']+)'")
EPOCH = re.compile(r" epoch \d+/\d+: .* \| ([\d.]+) s$")


def timed_repro(path: Path, *targets: str) -> tuple[float, list[tuple[float, str]]]:
    """Run `dvc repro`; (seconds, [(seconds since start, line), ...]) of its merged output."""
    env = run_env()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", *targets],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in proc.stdout]
    if proc.wait() != 0:
        sys.exit("dvc repro failed:\n" + "\n".join(line for _, line in lines[-40:]))
    return time.perf_counter() - start, lines


def breakdown(seconds: float, lines: list[tuple[float, str]]) -> list[dict]:
    """One row per stage, in the order DVC ran them."""
    rows: list[dict] = []
    for t, line in lines:
        if m := RUNNING.search(line):
            if rows:
                rows[-1]["wall"] = t - rows[-1].pop("start")
            rows.append({"stage": m.group(1), "start": t, "work": None, "training": 0.0})
        elif rows and (done := parse_done(line)):
            rows[-1]["work"] = done[1]
        elif rows and (m := EPOCH.search(line)):
            rows[-1]["training"] += float(m.group(1))
    if rows:
        rows[-1]["wall"] = seconds - rows[-1].pop("start")
    for row in rows:
        row["overhead"] = row["wall"] - row["work"] if row["work"] is not None else None
    return rows


def totals(rows: list[dict], seconds: float) -> dict:
    """Sums over stages of each kind (train, evaluate, compare), and DVC's share outside stages."""
    out = {}
    for kind in ("train", "evaluate", "compare"):
        mine = [r for r in rows if r["stage"].split("@")[0] == kind]
        out[kind] = {
            k: round(sum(r[k] or 0 for r in mine), 2)
            for k in ("wall", "work", "training", "overhead")
        }
        out[kind]["stages"] = len(mine)
    out["dvc_before_first_stage"] = round(seconds - sum(r["wall"] for r in rows), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--seeds",
        help="train.seeds' blocks, comma-separated, e.g. 0-2 or 0-9,10-19 (default: params.yaml's)",
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", help="comma-separated, a subset of params.yaml's (default: all)")
    ap.add_argument(
        "--targets", default="", help="what to repro after download and stats, e.g. compare"
    )
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=YAML",
        help="another params edit, e.g. train.deterministic=false",
    )
    ap.add_argument("--out", default="bench-out/pipeline.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        proj = make_project(Path(tmp), n_train=args.n_train, n_test=args.n_test)
        raw = proj.params()
        raw["train"]["epochs"] = args.epochs
        if args.seeds:
            raw["train"]["seeds"] = [yaml.safe_load(s) for s in args.seeds.split(",")]
        if args.variants:
            keep = args.variants.split(",")
            raw["study"] = keep  # the others stay defined, untrained
            raw["compare"]["parents"] = {
                k: v for k, v in raw["compare"]["parents"].items() if k in keep and v in keep
            }
        for edit in args.set:
            key, _, value = edit.partition("=")
            section, _, name = key.partition(".")
            raw[section][name] = yaml.safe_load(value)
        proj.set_params(raw)
        proj.commit("benchmark")
        data_s, _ = timed_repro(proj.path, "download", "stats")
        seconds, lines = timed_repro(proj.path, *filter(None, args.targets.split(",")))
        rows = breakdown(seconds, lines)
        metrics = json.loads(Path(tmp, "compare/summary.json").read_text())["micro_f1"]
        # the run's comparison, to read after the copy is gone
        kept = Path(args.out).with_suffix("")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(Path(tmp, "compare"), kept)
    report = {
        "seconds_train_evaluate_compare": round(seconds, 2),
        "seconds_download_stats": round(data_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "epochs": args.epochs,
        "seeds": raw["train"]["seeds"],
        "n_train": args.n_train,
        "edits": args.set,
        "totals": totals(rows, seconds),
        "micro_f1": metrics,
        "stages": [
            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ],
    }
    report = write_report(args.out, report)
    print(f"{'stage':26s} {'wall':>7s} {'work':>8s} {'training':>9s} {'overhead':>9s}")
    for r in rows:
        print(
            f"{r['stage']:26s} {r['wall']:7.2f} {r['work'] or 0:8.2f} "
            f"{r['training']:9.2f} {r['overhead'] or 0:9.2f}"
        )
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))


if __name__ == "__main__":
    main()
