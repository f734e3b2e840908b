"""Benchmark: growing a committed study by a block of seeds against training all of them afresh.

    python -m benchmarks.bench_grow [--seeds 10] [--epochs 1] [--n-train 500] [--repeats 3]
                                    [--variants baseline,norm_inputs]

Each repeat, in temporary git repositories on synthetic data (as the end-to-end tests make them):
  grow     a committed study of ``train.seeds: [0-9]`` (run and committed untimed), then
           ``train.seeds: [0-9, 10-19]``: the timed `dvc repro` trains and scores the new block
           and reruns compare;
  scratch  a fresh project with ``train.seeds: [0-9, 10-19]`` whose download, stats and page
           ran untimed: the timed `dvc repro` trains and scores both blocks and runs compare.
Both timed commands are the whole `dvc repro`, process start-up and DVC's own work included;
scratch leaves out the stages that growing never pays for, so the ratio is the conservative
one.  The two end with the same params, so every results/ and compare/ file must
come out byte-identical (checked, and reported as ``identical``).  Reports the medians and their
ratio, grow / scratch (the target is <= 0.55).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_report
from cifar10_tricks.testing import Project, make_project


def _project(where: Path, args, blocks: list[str]) -> Project:
    proj = make_project(where, n_train=args.n_train, n_test=args.n_test)
    raw = proj.params()
    raw["train"].update({"epochs": args.epochs, "seeds": blocks})
    if args.variants:
        keep = args.variants.split(",")
        raw["study"] = keep  # the others stay defined, untrained
        raw["compare"]["parents"] = {
            k: v for k, v in raw["compare"]["parents"].items() if k in keep and v in keep
        }
    proj.set_params(raw)
    proj.commit(f"seeds {blocks}")
    return proj


def _timed_repro(proj: Project) -> tuple[float, str]:
    start = time.perf_counter()
    out = proj.dvc("repro")
    return time.perf_counter() - start, out.stdout + out.stderr


def _outputs(proj: Project) -> dict[str, bytes]:
    files = [*proj.path.glob("results/**/*"), *proj.path.glob("compare/*")]
    return {str(f.relative_to(proj.path)): f.read_bytes() for f in sorted(files) if f.is_file()}


def one_round(args, tmp: Path) -> dict:
    old, new = f"0-{args.seeds - 1}", f"{args.seeds}-{2 * args.seeds - 1}"
    study = _project(tmp / "grow", args, [old])
    study.dvc("repro")
    study.commit("the committed study")
    raw = study.params()
    raw["train"]["seeds"] = [old, new]
    study.set_params(raw)
    grow_s, grow_log = _timed_repro(study)

    scratch = _project(tmp / "scratch", args, [old, new])
    scratch.dvc("repro", "download", "stats", "page")
    scratch_s, _ = _timed_repro(scratch)
    ran = [line for line in grow_log.splitlines() if line.startswith("Running stage")]
    return {
        "grow_s": round(grow_s, 2),
        "scratch_s": round(scratch_s, 2),
        "grow_stages_run": len(ran),
        "old_block_retrained": any(f"-{old}'" in line for line in ran),
        "identical": _outputs(study) == _outputs(scratch),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds in the study and in the new block")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", help="comma-separated, a subset of params.yaml's (default: all)")
    ap.add_argument("--out", default="bench-out/grow.json")
    args = ap.parse_args(argv)

    rounds = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-grow-") as tmp:
            rounds.append(one_round(args, Path(tmp)))
        print(json.dumps({"round": i + 1, **rounds[-1]}), flush=True)
    grow = statistics.median(r["grow_s"] for r in rounds)
    scratch = statistics.median(r["scratch_s"] for r in rounds)
    report = {
        "seeds": f"{args.seeds} -> {2 * args.seeds}",
        "epochs": args.epochs,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "variants": args.variants or "all",
        "median_grow_s": grow,
        "median_scratch_s": scratch,
        "ratio": round(grow / scratch, 3),
        "identical": all(r["identical"] for r in rounds),
        "old_block_retrained": any(r["old_block_retrained"] for r in rounds),
        "rounds": rounds,
    }
    write_report(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))
    return report


if __name__ == "__main__":
    main()
