"""Where and how torch runs: device choice, precision, determinism, the CPU allocator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cifar10_tricks import device
from cifar10_tricks.errors import UserError
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]


def test_device_auto_falls_back_to_cpu_and_named_absent_device_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device.pick_device("auto").type == "cpu"
    with pytest.raises(UserError, match="no cuda device is available"):
        device.pick_device("cuda")
    with pytest.raises(
        UserError, match=r"'cuda:0' but this machine has no CUDA GPU.*train.device=auto"
    ):
        device.pick_device("cuda:0")


def test_one_gpu_of_several_is_named_and_an_absent_one_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match=r"'cuda:2' but this machine has GPUs cuda:0 to cuda:1"):
        device.pick_device("cuda:2")


def test_precision_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(device, "bf16_supported", lambda device: False)
    assert device.pick_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(device, "bf16_supported", lambda device: True)
    assert device.pick_precision("auto", torch.device("cpu")) == "bf16"
    assert device.pick_precision("fp32", torch.device("cpu")) == "fp32"


def test_deterministic_mode_is_set_without_importing_the_compiler():
    # A fresh process: the flag must be on (warn-only), and torch._inductor, a 1.6 s import that
    # torch.use_deterministic_algorithms makes, must not be loaded by any stage's set-up.
    code = (
        "import sys, torch; from cifar10_tricks.device import configure_torch; "
        "configure_torch(torch.device('cpu'), True); "
        "print(torch.are_deterministic_algorithms_enabled(), "
        "torch.is_deterministic_algorithms_warn_only_enabled(), 'torch._inductor' in sys.modules)"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_allocator_keeps_freed_memory_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = (
        "from cifar10_tricks.device import keep_freed_memory; import torch; "
        "print(keep_freed_memory()); "
        "x = [torch.ones(1 << 20) for _ in range(8)]; del x; print(float(torch.ones(3).sum()))"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split() == ["True", "3.0"]


def test_seeds_per_step_auto_is_a_constant_of_the_device_type_never_of_free_memory(
    monkeypatch,
):
    """On a GPU ``auto`` stacks every seed of the variant, whatever memory is free (so a busy
    GPU gives the same stack, and the same results, as an idle one); a number is a cap."""
    gib = 2**30
    cuda, mps = torch.device("cuda"), torch.device("mps")
    for free in (100 * 2**20, 80 * gib):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 80 * gib))
        assert device.seeds_per_step("auto", 10, cuda) == 10
    assert device.seeds_per_step("auto", 10, mps) == 10
    assert device.seeds_per_step(2, 10, cuda) == 2
    monkeypatch.setattr(device, "CUDA_STACK_CAP", 4)  # once a GPU has measured where it pays
    assert (
        device.seeds_per_step("auto", 10, cuda) == 4 and device.seeds_per_step("auto", 3, cuda) == 3
    )


def test_seeds_per_step_on_a_cpu_is_one_unless_capped_higher():
    cpu = torch.device("cpu")
    assert device.seeds_per_step("auto", 10, cpu) == 1  # stacking does not pay on a CPU
    assert device.seeds_per_step(4, 10, cpu) == 4
    assert device.seeds_per_step(32, 10, cpu) == 10


def test_determinism_switches_off_again_and_skips_the_nan_fill():
    """configure_torch(False) after (True) turns deterministic mode off (gpu_check measures
    both), and deterministic mode does not fill new tensors with NaN."""
    code = (
        "import torch, torch.utils.deterministic as d; "
        "from cifar10_tricks.device import configure_torch; cpu = torch.device('cpu'); "
        "configure_torch(cpu, True); on = torch.are_deterministic_algorithms_enabled(); "
        "fill = d.fill_uninitialized_memory; "
        "configure_torch(cpu, False); print(on, fill, torch.are_deterministic_algorithms_enabled())"
    )
    assert run_python("-c", code, check=True).stdout.split() == ["True", "False", "False"]


def test_deterministic_runs_without_the_nan_fill_repeat_bit_for_bit(data):
    """Two trainings in deterministic mode (no NaN fill) end with the same bits."""
    from cifar10_tricks import cifar, params
    from stages.train import model_config, train_seeds
    from tests.conftest import STATS

    device.configure_torch(torch.device("cpu"), deterministic=True)
    v = params.Variant(dropout_conv=0.2, batch_size=32)
    tp = params.TrainParams(epochs=1, seeds=(0, 1), device="cpu", precision="fp32")
    cfg = model_config(v, STATS, cifar.CLASSES)
    a, b = (train_seeds("v", v, cfg, data, (0, 1), tp, "fp32")[0] for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_auto_takes_bf16_only_where_the_gpu_that_runs_has_it_natively(monkeypatch):
    """On CUDA, auto asks the GPU that will run (cuda:<k>, not the current one) whether bf16
    is native, emulation not counted (a T4 or V100 emulates it, slower than fp32)."""
    import contextlib

    asked = []

    @contextlib.contextmanager
    def on(dev):
        asked.append(str(dev))
        yield

    monkeypatch.setattr(torch.cuda, "device", on)
    for native in (True, False):
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, native=native: native and not including_emulation,
        )
        want = "bf16" if native else "fp32"
        assert device.pick_precision("auto", torch.device("cuda:1")) == want
    assert asked == ["cuda:1", "cuda:1"]
