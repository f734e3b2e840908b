"""What every stage shares at run time: error reporting, atomic writes, device, seeds.

Expected problems (bad params, a bad archive, a missing upstream output) raise
:class:`UserError`; :func:`run_main` prints its message in one line on stderr and exits
with status 2, with no traceback unless ``CIFAR10_TRICKS_DEBUG=1`` is set.  Real bugs
keep their traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

log = logging.getLogger("cifar10_tricks")


class UserError(Exception):
    """A problem the user can fix; the message names it and the way out."""


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main`` with logging set up and user errors turned into exit 2.

    On success it logs the stage's time, and how much of it went on imports (torch,
    scikit-learn, ...) before ``main`` began: the fixed cost every stage process pays.
    """
    from stages import STARTED

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    begun = time.perf_counter()
    try:
        main(argv)
        spec = getattr(sys.modules.get(main.__module__), "__spec__", None)  # -m runs it as __main__
        stage = (spec.name if spec else main.__module__).rpartition(".")[2]
        log.info("%s done in %.2f s (imports %.2f s)", stage, time.perf_counter() - STARTED, begun - STARTED)
        if main.__module__ == "__main__":
            _exit_now()
    except UserError as exc:
        if os.environ.get("CIFAR10_TRICKS_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept; rerun `dvc repro`.", file=sys.stderr)
        sys.exit(130)


def _exit_now() -> None:
    """End a stage process that succeeded without the interpreter's teardown.

    Tearing down torch's modules takes 0.6-0.8 s per process here, paid by every train
    and evaluate stage.  By now every output is written and renamed into place, so
    nothing is lost: flush the logs and streams, then exit 0 at once.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def require(path: str | Path, stage: str) -> Path:
    """``path`` if it exists, else a UserError naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; it is made by the `{stage}` stage: run `dvc repro {stage}`.")
    return path


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    A crash, a kill or a full disk leaves ``target`` as it was (absent or old), never
    half-written: the rename is atomic on POSIX file systems.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, data) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(target: str | Path, header: list[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV file with ``header``, atomically."""
    import csv

    with atomic_path(target) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(header)
            out.writerows(rows)


def write_npz(target: str | Path, **arrays) -> None:
    """Write NumPy ``arrays`` as one uncompressed .npz (no pickles inside), atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_json(path: str | Path, stage: str):
    path = require(path, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); rerun `dvc repro -f {stage}`.") from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto"):
    """cuda > mps > cpu for ``auto``; a named device that is absent is an error.

    ``cuda:<k>`` names one GPU of several (one queue worker per GPU, say); it must exist.
    """
    import torch

    if requested.startswith("cuda:"):
        k, n = int(requested.split(":", 1)[1]), torch.cuda.device_count() if torch.cuda.is_available() else 0
        if k >= n:
            have = f"GPUs cuda:0 to cuda:{n - 1}" if n > 1 else "one GPU, cuda:0" if n == 1 else "no CUDA GPU"
            raise UserError(f"train.device = {requested!r} but this machine has {have}; name one of them, or "
                            "use `-S train.device=auto`.")
        return torch.device(requested)
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
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


def bf16_supported(device) -> bool:
    """Whether bf16 autocast runs natively (not emulated) on ``device``."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # oneDNN has native bf16 with AVX-512 BF16 or AMX; without them it is slower than fp32.
        cap = torch.backends.cpu.get_cpu_capability()
        flags = _cpu_flags()
        return cap in ("AVX512", "AVX512_BF16", "AMX") and bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pick_precision(requested: str, device) -> str:
    """``fp32`` or ``bf16``; ``auto`` takes bf16 where the hardware runs it natively."""
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if requested == "bf16" and device.type == "mps":
        raise UserError("train.precision = 'bf16' is not supported on mps; use fp32 or auto.")
    return requested


def configure_torch(device, deterministic: bool, allocator: bool = True) -> None:
    """Threads matched to the cores, a CPU allocator that keeps its memory (see
    :func:`keep_freed_memory`; ``allocator=False`` leaves glibc's default), and
    deterministic kernels when asked (slower on GPU)."""
    import torch

    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, cores or 1))
        if allocator:
            keep_freed_memory()
    if device.type == "cuda":
        if device.index is not None:  # cuda:<k>: streams and CUDA graphs are made on the current GPU
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_deterministic(True)


def set_deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)``, without its fixed cost.

    The public function also imports torch._inductor, only to set torch.compile's
    determinism flag; that import costs 1.6 s per stage process here, and no stage
    compiles.  So the flag is set directly when torch exposes it, else via the public call.
    """
    import torch

    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        set_flag(mode, warn_only=True)


def keep_freed_memory() -> bool:
    """Stop glibc handing memory back to the OS after every training step; True if set.

    Each CPU step allocates and frees activations of a few MB.  By default glibc serves
    such blocks with mmap and trims the heap top when they are freed, so every step
    page-faults its memory in afresh: a step of batch 64 took 34 ms instead of 21 ms
    here.  Raising the mmap threshold to 32 MiB (glibc's cap) and the trim threshold to
    1 GiB keeps freed memory for reuse; peak RSS is unchanged, since it was reached
    anyway.  A no-op on other C libraries and systems.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
