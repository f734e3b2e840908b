"""Files and failures: atomic writes, one-line user errors, the stage's time line."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import yaml

from stages import io
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]


def stats(data, out, **env):
    """The stats stage as dvc.yaml runs it, in a fresh process."""
    return run_python("-m", "stages.stats", "--data", str(data), "--out", str(out), **env)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"micro_f1": 0.5})
    with pytest.raises(OSError):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"micro_f1": 0.')  # half written, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == '{\n  "micro_f1": 0.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "sub" / "model.pt") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list((tmp_path / "sub").iterdir()) == []


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


def test_missing_upstream_output_names_the_stage(tmp_path):
    with pytest.raises(io.UserError, match=r"run `dvc repro stats`"):
        io.read_json(tmp_path / "stats.json", "stats")


def test_stage_logs_its_time_and_import_share(tmp_path, small_archive):
    from stages import cifar

    data = tmp_path / "d.npz"
    cifar.save(cifar.parse_archive(small_archive), data)
    proc = stats(data, tmp_path / "s.json")
    done = io.parse_done(proc.stderr)
    assert proc.returncode == 0 and done, proc.stderr
    stage, seconds, imports = done
    assert stage == "stats" and 0 < imports <= seconds
    failed = stats(tmp_path / "none.npz", tmp_path / "t.json")
    assert failed.returncode == 2 and "done in" not in failed.stderr  # only success says so


def test_done_line_is_read_back_by_its_parser():
    line = io.DONE_LINE.format(stage="train", seconds=5.404, imports=3.0)
    assert line == "train done in 5.40 s (imports 3.00 s)"
    assert io.parse_done(f"other\n{line}\nmore") == ("train", 5.4, 3.0)
    assert io.parse_done("error: no") is None


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
        (io.UserError("first line\nsecond line\n  third"), "first line second line third"),
    ],
)
def test_expected_failures_are_one_error_line_and_exit_2(capsys, exc, says):
    with pytest.raises(SystemExit) as ended:
        io.run_main(_failing_main(exc))
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 2 and err[-1].startswith("error: ") and says in err[-1], err
    assert "Traceback" not in "\n".join(err)
    if isinstance(exc, OSError):
        assert exc.filename in err[-1]


def test_a_real_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        io.run_main(_failing_main(ZeroDivisionError("bug")))


def test_a_file_size_limit_is_one_error_line_and_leaves_no_temp(tmp_path, small_archive):
    """`ulimit -f` below the stats file's size: EFBIG (Python ignores SIGXFSZ)."""
    import resource
    import subprocess

    from stages import cifar

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
        "import time; from stages import io\n"
        "def main(argv):\n"
        f"    with io.atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:\n"
        "        tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(60)\n"
        "io.run_main(main)\n"
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


def test_stale_temporaries_of_a_killed_write_are_removed_by_the_next(tmp_path):
    stale = tmp_path / ".stats.json.k1ll3d.tmp"
    stale.write_text("half")
    other = tmp_path / ".other.json.x.tmp"
    other.write_text("not ours")
    io.write_json(tmp_path / "stats.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "stats.json"]


def test_a_group_of_writes_is_replaced_together_or_not_at_all(tmp_path):
    for name in ("a.json", "b.json", "c.json"):
        io.write_json(tmp_path / name, {"v": "old"})
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_group():
            io.write_json(tmp_path / "a.json", {"v": "new"})
            io.write_json(tmp_path / "b.json", {"v": "new"})
            raise KeyboardInterrupt  # Ctrl-C between the second and the third file
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        n: '{\n  "v": "old"\n}\n' for n in ("a.json", "b.json", "c.json")
    }
    with io.atomic_group():
        for name in ("a.json", "b.json", "c.json"):
            io.write_json(tmp_path / name, {"v": "new"})
        assert "old" in (tmp_path / "a.json").read_text()  # nothing renamed before the end
    assert all("new" in p.read_text() for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]
