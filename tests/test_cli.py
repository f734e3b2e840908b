"""A stage process: one-line user errors with exit 2, the debug switch, signals, the time line."""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import pytest
import yaml

from cifar10_tricks import cli
from cifar10_tricks.errors import UserError
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]


def stats(data, out, **env):
    """The stats stage as dvc.yaml runs it, in a fresh process."""
    return run_python("-m", "stages.stats", "--data", str(data), "--out", str(out), **env)


def test_user_error_is_one_line_exit_2_no_traceback(tmp_path):
    proc = stats(tmp_path / "none.npz", tmp_path / "s.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "dvc repro download" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.json").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = stats(tmp_path / "none.npz", tmp_path / "s.json", CIFAR10_TRICKS_DEBUG="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_params_file_fails_before_any_work(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_python(
        "-m",
        "stages.download",
        "--params",
        str(tmp_path / "params.yaml"),
        "--out",
        str(tmp_path / "d.npz"),
    )
    assert (
        proc.returncode == 2
        and "train.epochs = 0" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "d.npz").exists()


def test_stage_logs_its_time(tmp_path, small_archive):
    from cifar10_tricks import cifar

    data = tmp_path / "d.npz"
    cifar.save(cifar.parse_archive(small_archive), data)
    proc = stats(data, tmp_path / "s.json")
    assert proc.returncode == 0 and re.search(r"^stats done in \d+\.\d\d s$", proc.stderr, re.M)
    failed = stats(tmp_path / "none.npz", tmp_path / "t.json")
    assert failed.returncode == 2 and "done in" not in failed.stderr  # only success says so


# --- every failure ends in one `error:` line; nothing half-written stays -------------------


def _failing_main(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize(
    "exc, says",
    [
        (OSError(errno.ENOSPC, "No space left on device", "data/cifar10.npz"), "disk is full"),
        (OSError(errno.EFBIG, "File too large", "m.pt"), "ulimit -f"),
        (OSError(errno.EACCES, "Permission denied", "results/x"), "permissions"),
        (OSError(errno.EROFS, "Read-only file system", "compare"), "writable copy"),
        (MemoryError(), "out of memory"),
        (UserError("first line\nsecond line\n  third"), "first line second line third"),
    ],
)
def test_expected_failures_are_one_error_line_and_exit_2(capsys, exc, says):
    with pytest.raises(SystemExit) as ended:
        cli.run_main(_failing_main(exc))
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 2 and err[-1].startswith("error: ") and says in err[-1], err
    assert "Traceback" not in "\n".join(err)
    if isinstance(exc, OSError):
        assert exc.filename in err[-1]


def test_a_real_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        cli.run_main(_failing_main(ZeroDivisionError("bug")))


def test_a_file_size_limit_is_one_error_line_and_leaves_no_temp(tmp_path, small_archive):
    """`ulimit -f` below the stats file's size: EFBIG (Python ignores SIGXFSZ)."""
    import resource
    import subprocess

    from cifar10_tricks import cifar

    cifar.save(cifar.parse_archive(small_archive), tmp_path / "d.npz")
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.stats",
            "--data",
            str(tmp_path / "d.npz"),
            "--out",
            str(out / "stats.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: ") and "ulimit -f" in last, proc.stderr
    assert list(out.iterdir()) == []


def test_sigterm_removes_the_write_in_progress_and_exits_143(tmp_path):
    import signal
    import subprocess
    import time

    code = (
        "import time; from cifar10_tricks import cli, files\n"
        "def main(argv):\n"
        f"    with files.atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:\n"
        "        tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(60)\n"
        "cli.run_main(main)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated: nothing half-written was kept" in err
    assert list(tmp_path.iterdir()) == []


def _stage_inputs(root: Path, small_archive) -> dict[str, list[str]]:
    """Each stage's arguments, as dvc.yaml gives them, on tiny inputs made in ``root`` (the
    outputs under data/, models/, runs/, results/, compare/ and page/)."""
    import json

    from cifar10_tricks import cifar, curves
    from tests.conftest import STATS, fake_results, project_params, write_predictions

    inputs = root / "inputs"
    inputs.mkdir()
    params = project_params(root / "params.yaml", ["baseline"], ["0-1"])
    raw = yaml.safe_load(params.read_text())
    raw["data"].update({"source": "synthetic", "synthetic": {**raw["data"]["synthetic"]}})
    raw["data"]["synthetic"].update({"n_train": 50, "n_test": 20})
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cifar.save(cifar.parse_archive(small_archive), inputs / "d.npz")
    (inputs / "stats.json").write_text(json.dumps(STATS))
    write_predictions(inputs / "p.npz")
    row = {"train/loss": 1.0, "train/acc": 0.5, "test/loss": 0.9, "test/acc": 0.6}
    curves.write_live(inputs / "live", {s: [row] for s in (3, 5)})
    fake_results(inputs / "results", {"baseline": [0.5, 0.6]})
    data = ["--data", "inputs/d.npz"]
    return {
        "download": ["--out", "data/cifar10.npz"],
        "stats": [*data, "--out", "data/stats.json"],
        "train": [
            *("--variant", "baseline", "--seeds", "0-1", *data, "--stats", "inputs/stats.json"),
            *("--models", "models/baseline/0-1", "--live", "runs/baseline/0-1/live"),
            *("--predictions", "runs/baseline/0-1/predictions.npz"),
        ],
        "evaluate": [
            *("--variant", "v", "--seeds", "3-5", "--predictions", "inputs/p.npz"),
            *("--live", "inputs/live", "--out", "results/v/3-5"),
        ],
        "compare": ["--results", "inputs/results", "--out", "compare"],
        "page": ["--out", "page/dvc-plots.html"],
    }


@pytest.mark.parametrize("stage", ["download", "stats", "train", "evaluate", "compare", "page"])
def test_no_stage_writes_through_a_linked_output_folder(tmp_path, small_archive, stage):
    """Each stage, its output folder a committed link to a folder elsewhere: one `error:` line
    naming the link, exit 2, and nothing written there."""
    import importlib
    import os

    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    args = _stage_inputs(project, small_archive)[stage]
    tops = ("data", "models", "results", "compare", "page")
    top = next(a for a in args if a.split("/")[0] in tops)
    (project / top.split("/")[0]).symlink_to(outside, target_is_directory=True)
    here = os.getcwd()
    os.chdir(project)
    try:
        main = importlib.import_module(f"stages.{stage}").main
        with pytest.raises(UserError, match=rf"^{top.split('/')[0]} is a symbolic link .*rm "):
            main(args)
    finally:
        os.chdir(here)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "raised",
    [
        "ImportError('libtorch_cpu.so: failed to map segment from shared object')",
        "MemoryError()",
        "OSError(12, 'Cannot allocate memory')",
    ],
)
def test_an_import_that_runs_out_of_memory_is_one_error_line(raised):
    """An import that fails for want of memory (torch under `ulimit -v 2500000` on this
    project's machines raises the first) comes before run_main is running: the hook
    stages/__init__.py installs makes it one `error:` line and exit 2 too.  A real bug keeps
    its traceback."""
    proc = run_python("-c", f"import stages\nraise {raised}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: not enough memory to start the stage (")
    assert "Traceback" not in proc.stderr and "ulimit -v" in proc.stderr
    bug = run_python("-c", "import stages\nraise ImportError('no module named x')")
    assert bug.returncode == 1 and "Traceback" in bug.stderr


@pytest.mark.parametrize("value", ["0", "false", "no", "off", ""])
def test_debug_is_on_only_for_1_true_or_yes(tmp_path, value):
    proc = stats(tmp_path / "none.npz", tmp_path / "s.json", CIFAR10_TRICKS_DEBUG=value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for on in ("1", "true", "YES"):
        proc = stats(tmp_path / "none.npz", tmp_path / "s.json", CIFAR10_TRICKS_DEBUG=on)
        assert "Traceback" in proc.stderr
