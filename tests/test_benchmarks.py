"""The benchmarks' own logic: the per-stage breakdown, each mode on tiny data, the report's keys."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_pipeline import breakdown, totals
from benchmarks.common import parse_done
from cifar10_tricks.cli import run_main


def _succeeds(argv):
    pass


def test_parse_done_reads_the_line_a_stage_logs(caplog):
    """The benchmarks' parser reads what cifar10_tricks.cli.run_main really logs."""
    caplog.set_level("INFO")
    run_main(_succeeds, [])
    done = parse_done("\n".join(caplog.messages))
    assert done is not None and done[0] == "test_benchmarks" and 0 <= done[1] < 5
    assert parse_done("error: no") is None


def test_pipeline_breakdown_reads_stage_lines():
    lines = [
        (1.0, "Running stage 'train@a':"),
        (1.1, "> python -m stages.train --variant a ..."),
        (
            4.0,
            "train a on cuda (bf16), 50000 images, seeds [0]; data on the device 3.50 s after",
        ),
        (
            5.0,
            "a seed 0 epoch 1/2: train loss 1.0000 acc 50.00% | test loss 1.0000 acc 50.00% "
            "| lr 1.00e-03 | 0.50 s",
        ),
        (
            5.5,
            "a seed 0 epoch 2/2: train loss 0.9000 acc 60.00% | test loss 0.9000 acc 60.00% "
            "| lr 1.00e-03 | 0.25 s",
        ),
        (6.0, "train done in 2.40 s"),
        (6.5, "Running stage 'evaluate@a':"),
        (9.0, "evaluate done in 0.50 s"),
        (9.2, "Updating lock file 'dvc.lock'"),
    ]
    rows = breakdown(10.0, lines)
    assert [r["stage"] for r in rows] == ["train@a", "evaluate@a"]
    train, evaluate = rows
    assert train["wall"] == pytest.approx(5.5) and train["work"] == 2.4
    assert train["training"] == pytest.approx(0.75) and train["overhead"] == pytest.approx(3.1)
    assert evaluate["wall"] == pytest.approx(3.5) and evaluate["overhead"] == pytest.approx(3.0)
    sums = totals(rows, 10.0)
    assert sums["train"]["stages"] == 1 and sums["compare"]["stages"] == 0
    assert sums["dvc_before_first_stage"] == pytest.approx(1.0)


def test_pipeline_breakdown_leaves_a_silent_stage_unmeasured():
    rows = breakdown(3.0, [(0.5, "Running stage 'compare':"), (2.0, "error: something")])
    assert (
        rows[0]["work"] is None
        and rows[0]["overhead"] is None
        and rows[0]["wall"] == pytest.approx(2.5)
    )


def test_bench_train_modes_run_on_tiny_data(small_archive):
    """Each mode bench_train times runs end to end with the trainer as it is (a smoke test)."""
    import time

    import torch

    from benchmarks.bench_train import run_blog, run_bound, run_project
    from cifar10_tricks import cifar, params

    ds = cifar.parse_archive(small_archive)
    cpu, mean, std = torch.device("cpu"), (0.5,) * 3, (0.25,) * 3
    dropout = params.load("params.yaml").variants["dropout_both"]
    assert 0 <= run_project(ds, 1, cpu, "fp32", mean, std, dropout, seeds=3, per_step=2) <= 1
    assert 0 <= run_blog(ds, 1, cpu, "fp32", mean, std) <= 1
    # The bound's accuracy comes from the step's own sums: a step that did not train (or did
    # not count) leaves them at zero or at chance; eight epochs on the same 250 images learn.
    (one, _), (eight, started) = (run_bound(ds, e, cpu, "fp32", mean, std) for e in (1, 8))
    assert 0 < one <= 1 and 0.2 < eight <= 1 and eight > one
    assert started <= time.perf_counter()  # the clock it started, after its set-up


def test_bench_stack_ways_train_the_same_models():
    """grouped, vmap and sequential compute the same steps: their timings compare like with like."""
    import torch

    from benchmarks.bench_stack import WAYS, build

    cpu = torch.device("cpu")
    built = {way: build(way, 2, cpu, batch=8) for way in WAYS}
    first = {way: loss for way, (_, loss) in built.items()}
    second = {way: step().detach() for way, (step, _) in built.items()}
    assert first["grouped"][0] != first["grouped"][1]  # two seeds, two models
    for way in ("vmap", "sequential"):
        assert torch.allclose(first[way], first["grouped"], rtol=1e-5)
        assert torch.allclose(second[way], second["grouped"], rtol=1e-4)
    assert not torch.allclose(second["grouped"], first["grouped"], rtol=1e-4)  # Adam stepped


def test_reports_are_keyed_by_commit_and_machine(tmp_path):
    from benchmarks.common import write_report

    report = write_report(tmp_path / "r.json", {"median": 1.0})
    assert len(report["commit"]) == 40 and isinstance(report["dirty"], bool)
    assert (
        report["machine"]["cpu"] and report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    )
    assert report["command"].startswith("python -m benchmarks.") and report["median"] == 1.0
    import json

    assert json.loads((tmp_path / "r.json").read_text()) == report


@pytest.mark.e2e
def test_gpu_check_quick_runs_every_part_on_the_cpu(tmp_path):
    """The one command a lent GPU runs cannot rot: on a CPU, tiny, every part ends in figures
    and every check passes, even where the `python` on PATH is another interpreter that
    cannot run the project (the stages DVC runs must use the interpreter running the check)."""
    import os
    import subprocess
    import sys

    from benchmarks.common import ROOT

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\necho 'not this project's python' >&2\nexit 1\n")
    (fake / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = report["parts"]
    assert set(parts) == {"first", "tests", "step", "train", "pipeline"}
    assert not [name for name, part in parts.items() if "error" in part], parts
    assert parts["tests"]["cuda_tests"] == "skipped"  # said as such, not as passed
    first = parts["first"]
    rows = {(r["variant"], r["seeds"]) for r in first["rows"]}
    assert rows == {
        (v, n) for v in ("baseline", "dropout_both", "full_tanh", "full_momentum") for n in (1, 2)
    }
    assert all(r["epoch_s"] > 0 and r["ms_per_step"] > 0 for r in first["rows"])
    assert set(first["evaluation"]) == {"batch_256_ms"}  # a CPU's own size is 256
    checks = first["checks"]
    assert set(checks) == {
        "bitwise_repeat",
        "stacked_equals_alone",
        "graphed_equals_eager",
        "lr_decays",
    }
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["lr_decays"]["lr_after_each_epoch"] == pytest.approx([1.6e-3, 1.28e-3, 1.024e-3])
    ways = {(r["way"], r["layout"], r["deterministic"]) for r in parts["step"]["rows"]}
    assert len(ways) == 2 * (3 + 4) and all(r["ms_per_step"] > 0 for r in parts["step"]["rows"])
    assert [r["layer"] for r in parts["step"]["layers"]["nchw"]] == ["conv1", "conv2", "conv3"]
    assert parts["step"]["kernels"] and parts["train"]["median"]["stacked_2"]["images_per_s"] > 0
    assert len(parts["pipeline"]["stages"]) == 2 + 2 + 1  # train, evaluate per variant; compare
    md = (tmp_path / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (quick") and "## One step" in md and "## pipeline" in md
    assert "stacked_equals_alone: **ok**" in md and "## Failed" not in md


def test_gpu_check_exits_non_zero_after_writing_the_report_when_a_part_fails(tmp_path):
    import subprocess
    import sys

    from benchmarks.common import ROOT

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu_check",
            "--quick",
            "--parts",
            "nonesuch",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "error: gpu_check part 'nonesuch'" in proc.stderr
    assert "nonesuch" in json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert "## Failed" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.e2e
def test_bench_grow_times_growing_against_scratch_and_checks_the_outputs_match(tmp_path):
    """One round on two variants, one seed grown to two: the grown study retrained nothing old
    and ends byte-identical to the one trained from scratch; both times are measured."""
    from benchmarks import bench_grow

    report = bench_grow.main(
        [
            *("--seeds", "1", "--n-train", "100", "--n-test", "50", "--repeats", "1"),
            *("--variants", "baseline,norm_inputs", "--out", str(tmp_path / "grow.json")),
        ]
    )
    (only,) = report["rounds"]
    assert only["identical"] and not only["old_block_retrained"]
    assert only["grow_stages_run"] == 2 + 2 + 1  # the new block's train and evaluate; compare
    assert 0 < report["median_grow_s"] and 0 < report["median_scratch_s"]
    assert report["ratio"] == round(report["median_grow_s"] / report["median_scratch_s"], 3)
    assert json.loads((tmp_path / "grow.json").read_text())["seeds"] == "1 -> 2"


def test_a_part_past_its_budget_is_killed_with_its_children_and_its_output_kept(tmp_path):
    """A part that starts a child and sleeps: past its budget both are gone, within seconds,
    and the report keeps what it printed."""
    import sys
    import time

    import psutil

    from benchmarks import gpu_check

    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen(['sleep', '300']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); "
        "print('started a child', flush=True); time.sleep(300)"
    )
    start = time.perf_counter()
    report = gpu_check.run_part("nap", False, tmp_path, 3, command=[sys.executable, "-c", code])
    assert time.perf_counter() - start < 30
    assert "ran past its budget of 3 s" in report["error"]
    assert "started a child" in report["output"]
    child = int(pid_file.read_text())
    time.sleep(0.5)
    try:  # gone, or a zombie that nothing reaps here (its parent was killed too)
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_gpu_check_writes_its_report_where_git_is_missing(tmp_path):
    """No git on the machine (a lent GPU's image): the report is still written, commit null."""
    import os
    import subprocess
    import sys

    from benchmarks.common import ROOT

    bare = tmp_path / "bin"  # a PATH with nothing on it: no git
    bare.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu_check",
            "--quick",
            "--parts",
            "tests",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": str(bare)},
    )
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["commit"] is None and report["parts"]["tests"]["cuda_tests"] == "skipped"
    assert proc.returncode == 0, proc.stderr[-2000:]
