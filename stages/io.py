"""Files and failures: what every stage shares, with no torch, NumPy only where an array is written.

Expected problems (bad params, a bad archive, a missing upstream output) raise
:class:`UserError`; :func:`run_main` prints its message in one line on stderr and exits
with status 2, with no traceback unless ``CIFAR10_TRICKS_DEBUG=1`` is set.  Real bugs
keep their traceback.

Every output is written through :func:`atomic_path`: a crash, a kill or a full disk leaves
the old file (or none), never a half-written one.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger("cifar10_tricks")


class UserError(Exception):
    """A problem the user can fix; the message names it and the way out."""


# The line every stage logs when it succeeds, and its one reader (the benchmarks).
DONE_LINE = "{stage} done in {seconds:.2f} s (imports {imports:.2f} s)"
_DONE = re.compile(r"^(\w+) done in ([\d.]+) s \(imports ([\d.]+) s\)$", re.M)


def parse_done(text: str) -> tuple[str, float, float] | None:
    """(stage, seconds, imports) of the first :data:`DONE_LINE` in ``text``, or None."""
    m = _DONE.search(text)
    return (m.group(1), float(m.group(2)), float(m.group(3))) if m else None


class Terminated(BaseException):
    """SIGTERM (``kill``, Docker, Slurm), raised in the main thread like KeyboardInterrupt."""


def _terminate(signum, frame) -> None:
    raise Terminated


# What to do about an OSError, by errno: the way out the message names.
_IO_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, then rerun `dvc repro`",
    errno.EDQUOT: "the disk quota is used up: free some space, then rerun `dvc repro`",
    errno.EFBIG: "the file is larger than this system allows (ulimit -f): raise the limit",
    errno.EACCES: "permission denied: check the folder's permissions",
    errno.EPERM: "not permitted: check the folder's permissions",
    errno.EROFS: "the file system is read-only: run the pipeline in a writable copy",
    errno.ENOMEM: "out of memory: close other programs or use a machine with more",
}


def one_line(text: str) -> str:
    """``text`` on one line: an `error:` message is always the last line of the output."""
    return " ".join(str(text).split())


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main`` with logging set up; expected failures end in one line.

    A :class:`UserError`, an I/O error (disk full, file too large, permission denied,
    read-only file system) or running out of memory prints ``error: ...`` as the last line of
    stderr, on one line, and exits 2, with no traceback unless ``CIFAR10_TRICKS_DEBUG=1``.
    SIGINT and SIGTERM remove the temporaries of writes in progress and exit 130 and 143.
    On success it logs the stage's time, and how much of it went on imports (torch,
    scikit-learn, ...) before ``main`` began: the fixed cost every stage process pays.
    """
    from stages import STARTED

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    begun = time.perf_counter()
    debug = bool(os.environ.get("CIFAR10_TRICKS_DEBUG"))
    try:
        main(argv)
        spec = getattr(sys.modules.get(main.__module__), "__spec__", None)  # -m runs it as __main__
        stage = (spec.name if spec else main.__module__).rpartition(".")[2]
        now = time.perf_counter()
        log.info(DONE_LINE.format(stage=stage, seconds=now - STARTED, imports=begun - STARTED))
        if main.__module__ == "__main__":
            _exit_now()
    except UserError as exc:
        if debug:
            raise
        _fail(str(exc))
    except OSError as exc:
        if debug or exc.errno not in _IO_ADVICE:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot write or read{where}: {exc.strerror}; {_IO_ADVICE[exc.errno]}.")
    except MemoryError:
        if debug:
            raise
        _fail(f"out of memory; {_IO_ADVICE[errno.ENOMEM]}.")
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept; rerun `dvc repro`.", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("terminated: nothing half-written was kept; rerun `dvc repro`.", file=sys.stderr)
        sys.exit(143)


def _fail(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(2)


def _exit_now() -> None:
    """End a stage process that succeeded without the interpreter's teardown.

    Tearing down torch's modules is a measurable share of a train stage (`bench_startup`).  By
    now every output is written and renamed into place, so nothing is lost: flush the logs
    and streams, then exit 0 at once.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def require(path: str | Path, stage: str) -> Path:
    """``path`` if it exists, else a UserError naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path} does not exist; it is made by the `{stage}` stage: run `dvc repro {stage}`."
        )
    return path


_group: list[tuple[Path, Path]] | None = None  # (temporary, target) of the open atomic_group


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    A crash, a kill or a full disk leaves ``target`` as it was (absent or old), never
    half-written: the rename is atomic on POSIX file systems.  Temporaries that a SIGKILL
    left beside ``target`` are removed first.  Inside :func:`atomic_group` the rename waits
    for the group.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        if _group is None:
            os.replace(tmp, target)
        else:
            _group.append((tmp, target))
            return
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Every :func:`atomic_path` write inside is renamed into place together at the end, with
    SIGINT and SIGTERM held off meanwhile; if anything fails first, none is, and every
    temporary is removed: a stage's outputs are all new or all as they were."""
    global _group
    if _group is not None:
        raise RuntimeError("atomic_group does not nest")
    _group = pending = []
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _group = None
    held = {signal.SIGINT, signal.SIGTERM}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for tmp, target in pending:
            os.replace(tmp, target)
    finally:
        for tmp, _ in pending:  # none left after a full pass; after a failed rename, the rest
            tmp.unlink(missing_ok=True)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, data) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, stage: str):
    """The JSON document at ``path``, which ``stage`` writes; a UserError naming it if unusable."""
    path = require(path, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); rerun `dvc repro -f {stage}`.") from None


def write_csv(target: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV file with ``header``, atomically."""
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
