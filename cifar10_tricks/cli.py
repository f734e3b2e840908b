"""A stage process: logging, signals, and expected failures as one ``error:`` line.

:func:`run_main` runs a stage's ``main``.  A :class:`~cifar10_tricks.errors.UserError`, an I/O
error with a known way out, or running out of memory prints ``error: ...`` as the last line of
stderr and exits 2, with no traceback unless ``CIFAR10_TRICKS_DEBUG=1`` is set.  Real bugs keep
their traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from cifar10_tricks.errors import UserError, one_line

log = logging.getLogger("cifar10_tricks")


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


# After Ctrl-C or SIGTERM: the way back, whether `dvc repro` or `dvc exp run` ran the stage.
_AGAIN = (
    "run the same command again to go on (`dvc repro`, or `dvc exp run` with the same -S "
    "options): the stages that finished are not rerun."
)


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main`` with logging set up; expected failures end in one line.

    A :class:`UserError`, an I/O error (disk full, file too large, permission denied,
    read-only file system) or running out of memory prints ``error: ...`` as the last line of
    stderr, on one line, and exits 2, with no traceback unless ``CIFAR10_TRICKS_DEBUG=1``.
    SIGINT and SIGTERM remove the temporaries of writes in progress and exit 130 and 143.
    On success it logs ``<stage> done in X s``: the stage's own work, after its imports.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    begun = time.perf_counter()
    debug = debug_on()
    try:
        main(argv)
        spec = getattr(sys.modules.get(main.__module__), "__spec__", None)  # -m runs it as __main__
        stage = (spec.name if spec else main.__module__).rpartition(".")[2]
        log.info("%s done in %.2f s", stage, time.perf_counter() - begun)
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
        print(f"interrupted: nothing half-written was kept; {_AGAIN}", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print(f"terminated: nothing half-written was kept; {_AGAIN}", file=sys.stderr)
        sys.exit(143)


def debug_on() -> bool:
    """``CIFAR10_TRICKS_DEBUG`` is 1, true or yes (any case): tracebacks instead of one line.
    Any other value, 0 and false included, leaves it off."""
    return os.environ.get("CIFAR10_TRICKS_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _short_of_memory(exc: BaseException) -> bool:
    """An exception that says the process ran out of memory: MemoryError, or a library that
    could not be mapped (``ulimit -v``: "failed to map segment", ENOMEM)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, (ImportError, OSError)) and (
        getattr(exc, "errno", None) == errno.ENOMEM
        or "failed to map segment" in text
        or "Cannot allocate memory" in text
    )


def on_import_failure(kind, exc, tb) -> None:
    """``sys.excepthook`` for a stage process before :func:`run_main` runs: an import that ran
    out of memory (torch under ``ulimit -v``, say) is one ``error:`` line and exit 2 too;
    anything else keeps its traceback."""
    if debug_on() or not _short_of_memory(exc):
        sys.__excepthook__(kind, exc, tb)
        return
    print(
        f"error: {one_line(f'not enough memory to start the stage ({kind.__name__}: {exc})')}; "
        f"{_IO_ADVICE[errno.ENOMEM]} (or raise the limit: `ulimit -v`), then {_AGAIN}",
        file=sys.stderr,
    )
    sys.stderr.flush()
    os._exit(2)


def _fail(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(2)


def _exit_now() -> None:
    """End a stage process that succeeded without the interpreter's teardown.

    Tearing down torch's modules is wall time a stage process would spend for nothing.  By
    now every output is written and renamed into place, so nothing is lost: flush the logs
    and streams, then exit 0 at once.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
