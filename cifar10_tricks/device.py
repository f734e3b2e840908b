"""Where and how torch runs: the device, the precision, threads, determinism, seeds per step.

Only the stages that train import this module (it imports torch).
"""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

from cifar10_tricks.errors import UserError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    """cuda > mps > cpu for ``auto``; a named device that is absent is an error.

    ``cuda:<k>`` names one GPU of several (one queue worker per GPU, say); it must exist.
    """
    if requested.startswith("cuda:"):
        k = int(requested.split(":", 1)[1])
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if k >= n:
            have = (
                f"GPUs cuda:0 to cuda:{n - 1}"
                if n > 1
                else "one GPU, cuda:0"
                if n == 1
                else "no CUDA GPU"
            )
            raise UserError(
                f"train.device = {requested!r} but this machine has {have}; name one "
                "of them, or use `-S train.device=auto`."
            )
        return torch.device(requested)
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        requested = next(name for name in ("cuda", "mps", "cpu") if available[name])
    elif not available[requested]:
        raise UserError(
            f"train.device = {requested!r} but no {requested} device is available here; "
            "use `-S train.device=auto` (or cpu)."
        )
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    """The device's model, for the result files: the GPU's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    from cifar10_tricks.provenance import cpu_name

    return cpu_name()


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively (not emulated) on ``device``."""
    if device.type == "cuda":
        # Native only (compute capability 8.0 on), on the GPU that will run: by default torch
        # counts emulation (a T4 or V100 "supports" bf16, slower than fp32), on the current GPU.
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # oneDNN has native bf16 with AVX-512 BF16 or AMX; without them it is slower than fp32.
        cap = torch.backends.cpu.get_cpu_capability()
        return cap in ("AVX512", "AVX512_BF16", "AMX") and bool(
            {"avx512_bf16", "amx_bf16"} & _cpu_flags()
        )
    return False


def _cpu_flags() -> set[str]:
    from cifar10_tricks.provenance import cpuinfo

    return set((cpuinfo("flags") or "").split())


def pick_precision(requested: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``; ``auto`` takes bf16 where the hardware runs it natively."""
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if requested == "bf16" and device.type == "mps":
        raise UserError("train.precision = 'bf16' is not supported on mps; use fp32 or auto.")
    return requested


def configure_torch(device: torch.device, deterministic: bool) -> None:
    """Threads matched to the cores, a CPU allocator that keeps its memory (see
    :func:`keep_freed_memory`), and deterministic kernels when asked (slower on GPU), or
    torch's defaults again when not: a call with ``False`` undoes one with ``True``.

    Deterministic mode skips torch's NaN fill of every uninitialised tensor
    (``torch.utils.deterministic.fill_uninitialized_memory``, on by default with it): a
    debugging aid that writes every new tensor once more (each a captured kernel in a CUDA
    graph), which repeatability does not need
    (`test_deterministic_runs_without_the_nan_fill_repeat_bit_for_bit`).
    """
    import torch.utils.deterministic

    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, cores or 1))
        keep_freed_memory()
    if device.type == "cuda":
        if device.index is not None:  # cuda:<k>: streams and CUDA graphs use the current GPU
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.utils.deterministic.fill_uninitialized_memory = False
    set_deterministic(deterministic)


def set_deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)``, without its fixed cost.

    The public function also imports torch._inductor, only to set torch.compile's
    determinism flag; that import is seconds of a train stage's start-up (`bench_startup`), and no
    stage compiles.  So the flag is set directly when torch exposes it, else via the public
    call.  A private API: listed in docs/developers.md with the test that guards it.
    """
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        set_flag(mode, warn_only=True)


def keep_freed_memory() -> bool:
    """Stop glibc handing memory back to the OS after every training step; True if set.

    Each CPU step allocates and frees activations of a few MB.  By default glibc serves
    such blocks with mmap and trims the heap top when they are freed, so every step
    page-faults its memory in afresh (`bench_train`'s blog mode keeps that default).
    Raising the mmap threshold to 32 MiB (glibc's cap) and the trim threshold to 1 GiB
    keeps freed memory for reuse; peak RSS is unchanged, since it was reached anyway.  A
    no-op on other C libraries and systems.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


# What `python -m benchmarks.gpu_check` decides for CUDA.  Until a GPU has measured them: a
# stack of seeds in contiguous NCHW, as PyTorch's own compiler chooses for grouped convolutions
# with more than one input channel per group (torch/_inductor/graph.py, decide_layout_opt: it
# cites a 31x slowdown in channels_last); no cap on a variant's stack.
CUDA_STACK_LAYOUT = "nchw"  # nchw | channels_last
CUDA_STACK_CAP: int | None = None  # seeds past which images/s per model stop rising


def memory_format(device: torch.device, n_seeds: int) -> torch.memory_format:
    """The layout a stack of ``n_seeds`` trains in on ``device``: channels_last, except a stack
    of several seeds on CUDA (``CUDA_STACK_LAYOUT``)."""
    if device.type == "cuda" and n_seeds > 1 and CUDA_STACK_LAYOUT == "nchw":
        return torch.contiguous_format
    return torch.channels_last


def seeds_per_step(requested: int | str, n_seeds: int, device: torch.device) -> int:
    """How many seeds share one step: ``train.seeds_per_step``, or for ``auto`` a constant of
    the device type, never of free memory (which would make a result depend on what else the
    GPU was running): every seed of the variant in one stack on a GPU (on CUDA at most
    ``CUDA_STACK_CAP``, once measured), and one on a CPU, where a stack trains fewer images
    per second per model than seeds one after another (`bench_train --seeds`, `bench_stack`).
    A stack that does not fit stops the train stage, naming this param as the way out."""
    if requested != "auto":
        return max(1, min(int(requested), n_seeds))
    if device.type == "cpu":
        return 1
    if device.type == "cuda" and CUDA_STACK_CAP:
        return min(n_seeds, CUDA_STACK_CAP)
    return n_seeds
