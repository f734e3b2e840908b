"""Run-time guarantees: atomic writes, clean user errors, device choice."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages import runtime

ROOT = Path(__file__).resolve().parents[1]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    runtime.write_json(target, {"micro_f1": 0.5})
    with pytest.raises(OSError):
        with runtime.atomic_path(target) as tmp:
            tmp.write_text('{"micro_f1": 0.')  # half written, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == '{\n  "micro_f1": 0.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with runtime.atomic_path(tmp_path / "sub" / "model.pt") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list((tmp_path / "sub").iterdir()) == []


def test_user_error_is_one_line_exit_2_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stages.stats", "--data", str(tmp_path / "none.npz"),
                           "--out", str(tmp_path / "s.json")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "dvc repro download" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.json").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stages.stats", "--data", str(tmp_path / "none.npz"),
                           "--out", str(tmp_path / "s.json")], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "CIFAR10_TRICKS_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_params_file_fails_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("epochs: 10", "epochs: 0"))
    proc = subprocess.run([sys.executable, "-m", "stages.download", "--params", str(tmp_path / "params.yaml"),
                           "--out", str(tmp_path / "d.npz")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "train.epochs = 0" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "d.npz").exists()


def test_device_auto_falls_back_to_cpu_and_named_absent_device_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.pick_device("auto").type == "cpu"
    with pytest.raises(runtime.UserError, match="no cuda device is available"):
        runtime.pick_device("cuda")
    with pytest.raises(runtime.UserError, match=r"'cuda:0' but this machine has no CUDA GPU.*train.device=auto"):
        runtime.pick_device("cuda:0")


def test_one_gpu_of_several_is_named_and_an_absent_one_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(runtime.UserError, match=r"'cuda:2' but this machine has GPUs cuda:0 to cuda:1"):
        runtime.pick_device("cuda:2")


def test_precision_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)
    assert runtime.pick_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: True)
    assert runtime.pick_precision("auto", torch.device("cpu")) == "bf16"
    assert runtime.pick_precision("fp32", torch.device("cpu")) == "fp32"


def test_missing_upstream_output_names_the_stage(tmp_path):
    with pytest.raises(runtime.UserError, match=r"run `dvc repro stats`"):
        runtime.read_json(tmp_path / "stats.json", "stats")


def test_deterministic_mode_is_set_without_importing_the_compiler():
    # A fresh process: the flag must be on (warn-only), and torch._inductor, a 1.6 s import that
    # torch.use_deterministic_algorithms makes, must not be loaded by any stage's set-up.
    code = ("import sys, torch; from stages.runtime import configure_torch; "
            "configure_torch(torch.device('cpu'), True); "
            "print(torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled(), 'torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


def test_stage_logs_its_time_and_import_share(tmp_path, small_archive):
    from stages import cifar

    data = tmp_path / "d.npz"
    cifar.save(cifar.parse_archive(small_archive), data)
    proc = subprocess.run([sys.executable, "-m", "stages.stats", "--data", str(data),
                           "--out", str(tmp_path / "s.json")], cwd=ROOT, capture_output=True, text=True)
    m = re.search(r"^stats done in ([\d.]+) s \(imports ([\d.]+) s\)$", proc.stderr, re.M)
    assert proc.returncode == 0 and m, proc.stderr
    assert 0 < float(m.group(2)) <= float(m.group(1))
    failed = subprocess.run([sys.executable, "-m", "stages.stats", "--data", str(tmp_path / "none.npz"),
                             "--out", str(tmp_path / "t.json")], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 2 and "done in" not in failed.stderr  # only success says so


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_allocator_keeps_freed_memory_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = ("from stages.runtime import keep_freed_memory; import torch; print(keep_freed_memory()); "
            "x = [torch.ones(1 << 20) for _ in range(8)]; del x; print(float(torch.ones(3).sum()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "3.0"]
