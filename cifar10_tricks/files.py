"""Files: reading what an upstream stage made, and writing outputs so none is ever half-written.

Every output is written through :func:`atomic_path`: a crash, a kill or a full disk leaves
the old file (or none), never a half-written one; :func:`atomic_group` replaces a stage's
outputs together; :func:`refuse_linked_folders` keeps every write inside the project.  Every
file a stage reads is read under limits checked before the memory they guard is taken: JSON
(:func:`read_json`: its size, its depth, no NaN, no huge integers) and NumPy's .npz
(:func:`read_npz`: each array's size, dtype and rank from its header).  No torch; NumPy
only where an array is read or written.
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


def refuse_linked_folders(target: str | Path) -> None:
    """Refuse to write ``target`` through a folder that is a symbolic link.

    Stages run in the project's root (DVC runs them there), so every folder between it and
    ``target`` is checked: a committed link in place of an output folder (``compare`` ->
    somewhere else) would have the stage overwrite files outside the project.  A target
    outside the working folder is not the pipeline's and is not checked.
    """
    target = Path(os.path.abspath(target))
    root = Path.cwd()
    try:
        parts = target.relative_to(root).parts[:-1]
    except ValueError:
        return
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            raise UserError(
                f"{here.relative_to(root)} is a symbolic link (to {os.readlink(here)}), so "
                f"writing {target.relative_to(root)} would write outside the project; refused, "
                f"nothing written. An output folder must be a real folder: remove the link "
                f"(`rm {here.relative_to(root)}`) and rerun."
            )


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
    refuse_linked_folders(target)
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
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file: say which one it was
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
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


MAX_JSON_BYTES = 64 * 2**20  # a report of 1,000 seeds x 100 epochs is ~5 MB; stats.json 0.2 KB
MAX_JSON_DIGITS = 30  # an integer in our JSON is a count, a seed (< 2**32) or a class index


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def read_json(path: str | Path, stage: str, max_bytes: int = MAX_JSON_BYTES):
    """The JSON document at ``path``, which ``stage`` writes; a UserError naming it if unusable:
    larger than ``max_bytes`` (checked before reading), nested too deeply, holding NaN or
    Infinity (Python's JSON reads them, the standard has none) or an integer of more than 30
    digits."""
    path = require(path, stage)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(f"{size:,} bytes, more than the {max_bytes:,} it can hold")
        return json.loads(
            path.read_text(encoding="utf-8"),
            parse_constant=_no_constant,
            parse_int=_bounded_int,
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); {rerun(stage)}.") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be this file; {rerun(stage)}.") from None


def read_npz(
    path: str | Path, stage: str, limits: dict[str, tuple[str, int, int]], what: str
) -> dict:
    """The arrays of an .npz that ``stage`` writes, each checked from its header before it is
    read: ``limits`` maps each name the file must hold to (the dtype kinds allowed, e.g.
    "iu" for integers, its rank, its most bytes).  The sizes zip's headers declare bound
    what is decompressed, and the .npy header's shape and dtype what is allocated, so a small
    file cannot claim gigabytes.  A UserError saying it is not ``what`` and naming the stage
    if anything is off."""
    import zipfile

    import numpy as np

    path = require(path, stage)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as z:
            members = {info.filename: info for info in z.infolist()}
            for name, (kinds, ndim, most) in limits.items():  # most: bytes
                info = members.get(f"{name}.npy")
                if info is None:
                    raise ValueError(f"it holds no {name!r}")
                with z.open(info) as f:
                    fmt = np.lib.format
                    version = fmt.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = fmt.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = fmt.read_array_header_2_0(f)
                    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if dtype.kind not in kinds or dtype.hasobject or len(shape) != ndim:
                        raise ValueError(f"{name} is {dtype} of shape {shape}")
                    if size > most or size > info.file_size:
                        raise ValueError(f"{name} claims {shape} of {dtype} ({size:,} bytes)")
                with z.open(info) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path} is not {what} ({type(exc).__name__}: {exc}); {rerun(stage)}."
        ) from None
    return arrays


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
