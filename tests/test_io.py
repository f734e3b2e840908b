"""Files and failures: atomic writes, one-line user errors, the stage's time line."""

from __future__ import annotations

import errno
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
