"""Files: reading what an upstream stage made, and writing outputs so none is ever half-written.

Every output is written through :func:`atomic_path`: a crash, a kill or a full disk leaves
the old file (or none), never a half-written one; :func:`atomic_group` replaces a stage's
outputs together.  No torch; NumPy only where an array is written.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import signal
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cifar10_tricks.errors import UserError, rerun


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
        raise UserError(f"{path} is unreadable ({exc}); {rerun(stage)}.") from None


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
