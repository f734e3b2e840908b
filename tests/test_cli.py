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
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
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
