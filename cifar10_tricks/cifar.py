"""CIFAR-10's python-format archive: read safely, generate synthetically, store.

The archive (``cifar-10-python.tar.gz``) holds ``cifar-10-batches-py/data_batch_1..5``,
``test_batch`` and ``batches.meta``: Python pickles.  Nothing here ever runs code from
an archive: members are read into memory (never extracted to disk) after every member's
name and type is checked, and the pickles go through :class:`RestrictedUnpickler`, which
admits only the few NumPy constructors a CIFAR batch uses.

The data set is stored as one uncompressed ``.npz`` (fast to load, no pickles):
``x_train`` uint8 (N, 32, 32, 3), ``y_train`` int64 (N,), ``x_test``, ``y_test``,
``classes`` (str).
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import pickle
import stat
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from cifar10_tricks import classes as class_names
from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import atomic_path, read_npz, write_npz

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3  # one row of a batch's `data`: 1024 red, then green, then blue
# Caps from CIFAR-10's real sizes, with headroom: a batch file is about 31 MB and the archive
# unpacks to about 186 MB in 9 members.  Anything far larger is not CIFAR-10 (or is a bomb).
MAX_MEMBER_BYTES = 64 * 2**20
MAX_ARCHIVE_BYTES = 256 * 2**20  # all members together, as their headers declare them
MAX_MEMBERS = 64


class ArchiveError(UserError):
    """The archive is not a well-formed CIFAR-10 python-format archive."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str = ""  # where the images came from, in words (the download stage says)


# --- reading safely -----------------------------------------------------------------


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as pickle uses it: Python 3 writes every ``bytes`` object at protocol
    <= 2 as ``_codecs.encode(str, 'latin1')``.  Only that encoding is admitted: a pure
    conversion, never a codec lookup by a name the file chooses."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than of a str to latin1")
    return text.encode("latin1")


# The dtypes a CIFAR batch holds: uint8 pixels, and labels as integers of any width.
DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")


class _Dtype:
    """What the unpickler makes of ``numpy.dtype(spec, align, copy)``: a plain integer dtype,
    its pickled state (byte order only) checked before NumPy sees any of it.  Structured,
    object, void and sub-array dtypes are refused: their state can make NumPy read pointers
    from the file's bytes."""

    def __init__(self, spec, align=False, copy=True):
        spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        if spec not in DTYPES:
            raise pickle.UnpicklingError(
                f"refusing dtype {spec!r}: a CIFAR-10 batch holds uint8 pixels and integer labels"
            )
        self.dtype = np.dtype(spec)

    def __setstate__(self, state) -> None:
        # NumPy's dtype state: (version, byte order, subarray, names, fields, elsize, alignment,
        # flags[, metadata]); for a plain integer only the byte order may vary.
        ok = (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and state[5:8] == (-1, -1, 0)
            and (len(state) == 8 or state[8] is None)
        )
        if not ok:
            raise pickle.UnpicklingError("refusing a dtype state other than a plain integer's")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _array(data, dtype, shape, fortran: bool = False) -> np.ndarray:
    """An array of ``shape`` from ``data``'s bytes, checked before anything is allocated."""
    if not isinstance(dtype, _Dtype):
        raise pickle.UnpicklingError("refusing an array whose dtype is not a plain integer")
    if (
        not isinstance(shape, tuple)
        or len(shape) > 2
        or not all(isinstance(n, int) and 0 <= n <= MAX_MEMBER_BYTES for n in shape)
    ):
        raise pickle.UnpicklingError(f"refusing an array of shape {shape!r}")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("refusing an array whose data are not bytes")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n * dtype.dtype.itemsize != len(data):
        raise pickle.UnpicklingError(
            f"refusing an array of shape {shape} whose data hold {len(data)} bytes, "
            f"not {n * dtype.dtype.itemsize}"
        )
    flat = np.frombuffer(bytes(data), dtype=dtype.dtype)
    return flat.reshape(shape, order="F" if fortran else "C")


class _NdarrayMarker:
    """``numpy.ndarray`` as pickles name it (the first argument of ``_reconstruct``), never
    callable: ``ndarray(shape, dtype, buffer, offset, strides)`` could view a few bytes as
    gigabytes (stride 0)."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray")


class _Array:
    """What the unpickler makes of ``_reconstruct(ndarray, (0,), b'b')``: a placeholder whose
    pickled state (version, shape, dtype, fortran, data) becomes a checked array."""

    def __init__(self, cls, shape, typecode):
        if cls is not _NdarrayMarker:
            raise pickle.UnpicklingError("refusing _reconstruct of anything but numpy.ndarray")
        self.array = None

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise pickle.UnpicklingError("refusing an array state of an unknown form")
        _, shape, dtype, fortran, data = state
        if isinstance(data, str):  # Python 2's str, as pickles of protocol <= 2 hold it
            data = data.encode("latin1")
        self.array = _array(data, dtype, shape, bool(fortran))


def _frombuffer(buf, dtype, shape, order):
    """Protocol 5's array rebuilder, with the same checks."""
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refusing array order {order!r}")
    return _array(buf, dtype, shape, order == "F")


def _resolved(obj, member: str):
    """The unpickled batch with each array placeholder replaced by its array."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise ArchiveError(f"{member} is not a readable CIFAR-10 batch (an array, no data).")
        return obj.array
    if isinstance(obj, _Dtype):
        raise ArchiveError(f"{member} is not a CIFAR-10 batch (a bare dtype).")
    if isinstance(obj, dict):
        return {k: _resolved(v, member) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolved(v, member) for v in obj]
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: dicts, lists, bytes, str, ints and integer arrays.

    The NumPy globals a batch names are admitted under their names (NumPy 1's and 2's module
    paths) but bound to this module's checked stand-ins, not NumPy's own: an array is built
    only from a plain integer dtype and exactly the bytes its shape needs, before NumPy sees
    the file's state.  ``_codecs.encode`` is admitted to latin-1 only (bytes as Python 3
    pickles them at protocol <= 2).  Everything else is refused before it can run.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _Array,
        ("numpy._core.multiarray", "_reconstruct"): _Array,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NdarrayMarker,
        ("numpy", "dtype"): _Dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch never contains it"
            ) from None


# Operations of one pickle, at the most: a CIFAR-10 batch takes about 30,000 (one per label and
# file name, a few for the rest).  Every operation builds at most one object or reference, and
# its data comes from the file, so this bounds what unpickling a member of at most
# MAX_MEMBER_BYTES can build (a list that appends itself 30 million times is 64 MB of opcodes
# and gigabytes of lists).
MAX_PICKLE_OPS = 200_000


def _count_ops(blob: bytes, member: str) -> None:
    """Walk the pickle's opcodes without building anything; refuse one with too many."""
    import pickletools

    try:
        for count, _ in enumerate(pickletools.genops(blob), start=1):
            if count > MAX_PICKLE_OPS:
                raise ArchiveError(
                    f"{member} is a pickle of more than {MAX_PICKLE_OPS:,} operations; a CIFAR-10 "
                    "batch takes about 30,000, so it is refused before it is unpickled. Use the "
                    "official archive."
                )
    except ArchiveError:
        raise
    except Exception as exc:  # genops raises ValueError and others on a garbled stream
        raise ArchiveError(
            f"{member} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})."
        ) from None


def unpickle(blob: bytes, member: str):
    _count_ops(blob, member)
    try:
        return _resolved(RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load(), member)
    except pickle.UnpicklingError as exc:
        raise ArchiveError(f"{member} is not a safe CIFAR-10 batch: {exc}.") from None
    except Exception as exc:  # truncated or garbled pickles raise many different types
        raise ArchiveError(
            f"{member} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})."
        ) from None


def _keys_as_str(obj, member: str) -> dict:
    """A batch dict with its keys as str, whether Python 2 (bytes) or 3 (str) wrote them."""
    if not isinstance(obj, dict):
        raise ArchiveError(
            f"{member} is not a CIFAR-10 batch (a {type(obj).__name__}, not a dict)."
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")) or ".." in path.parts:
        raise ArchiveError(
            f"{archive} has a member with an unsafe path ({member.name!r}) that would be "
            "written outside its folder; refusing the whole archive. Use the official archive."
        )
    if member.issym() or member.islnk():
        raise ArchiveError(
            f"{archive} has a link member {member.name!r} -> {member.linkname!r}; CIFAR-10 "
            "archives hold none, so the archive is refused. Use the official archive."
        )
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(
            f"{archive} has a special member {member.name!r} (device, fifo or similar); refused."
        )
    if member.size > MAX_MEMBER_BYTES:
        raise ArchiveError(
            f"{archive}: member {member.name!r} is {member.size} bytes, more than a CIFAR-10 "
            f"batch's {MAX_MEMBER_BYTES} at most; refused. Use the official archive."
        )


def read_members(archive: Path) -> dict[str, bytes]:
    """The batch files of ``archive``, read into memory after every member is checked."""
    wanted = {f"{BATCH_DIR}/{n}" for n in (*TRAIN_BATCHES, TEST_BATCH, META)}
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for count, member in enumerate(tar, start=1):
                _check_member(member, archive)
                total += member.size
                if count > MAX_MEMBERS or total > MAX_ARCHIVE_BYTES:
                    raise ArchiveError(
                        f"{archive} unpacks to more than {MAX_MEMBERS} members or "
                        f"{MAX_ARCHIVE_BYTES} bytes; CIFAR-10's has 9 members and about 186 MB, "
                        "so it is refused. Use the official archive."
                    )
                name = str(PurePosixPath(member.name))
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read(MAX_MEMBER_BYTES + 1)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArchiveError(
            f"{archive} is not a readable tar archive ({exc}); it may be truncated or not "
            "CIFAR-10's python version. Re-download cifar-10-python.tar.gz."
        ) from None
    missing = sorted(wanted - set(found))
    if missing:
        raise ArchiveError(
            f"{archive} lacks {', '.join(missing)}; it is not CIFAR-10's python-format archive "
            f"(expected a {BATCH_DIR}/ folder with data_batch_1..5, test_batch, batches.meta)."
        )
    return found


def _batch_arrays(raw, member: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _keys_as_str(raw, member)
    if "data" not in batch or "labels" not in batch:
        raise ArchiveError(f"{member} is not a CIFAR-10 batch (no data/labels entries).")
    data, labels = batch["data"], batch["labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ArchiveError(
            f"{member}: data is {desc}; CIFAR-10 batches hold uint8 rows of {PIXELS} pixels."
        )
    # Labels: a list of ints (the official files), or an integer array (some re-writers).
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ArchiveError(
                f"{member}: labels are a {labels.dtype} array of shape {labels.shape}; "
                "expected one integer per image."
            )
    elif not isinstance(labels, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in labels
    ):
        raise ArchiveError(f"{member}: labels must be a list or an array of integers.")
    if len(labels) != len(data):
        raise ArchiveError(f"{member}: expected {len(data)} labels, one per image.")
    # Checked before any conversion: a label of 2**63 would overflow int64.
    bad = next((int(v) for v in labels if not 0 <= v < n_classes), None)
    if bad is not None:
        raise ArchiveError(f"{member}: label {bad} is outside 0..{n_classes - 1}.")
    y = np.asarray(labels).astype(np.int64)
    # Rows are channel planes (R, G, B), each 32x32 row-major; store as NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _class_names(raw) -> tuple[str, ...]:
    meta = _keys_as_str(raw, META)
    names = meta.get("label_names")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, (bytes, str)) for n in names)
    ):
        raise ArchiveError(f"{META}: no list of label_names; not a CIFAR-10 data set.")
    if len(names) > class_names.MAX_CLASSES:  # before decoding them all
        raise ArchiveError(f"{META}: {len(names)} label_names; at most {class_names.MAX_CLASSES}.")
    decoded = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    problem = class_names.problem(decoded)
    if problem:
        raise ArchiveError(f"{META}: {problem}; refused.")
    return decoded


def parse_members(members: dict[str, bytes], origin: Path) -> Dataset:
    """Check and convert the batch files (name -> bytes) of an archive or a folder."""
    classes = _class_names(unpickle(members[f"{BATCH_DIR}/{META}"], META))
    parts = [
        _batch_arrays(unpickle(members[f"{BATCH_DIR}/{n}"], n), n, len(classes))
        for n in (*TRAIN_BATCHES, TEST_BATCH)
    ]
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    x_test, y_test = parts[-1]
    if len(x_train) == 0 or len(x_test) == 0:
        raise ArchiveError(f"{origin} holds no training or no test images.")
    return Dataset(x_train, y_train, x_test, y_test, classes)


def parse_archive(archive: Path) -> Dataset:
    """Read, check and convert a CIFAR-10 python-format archive."""
    return parse_members(read_members(archive), archive)


# Files an extracted cifar-10-batches-py/ may hold besides the batches (the official archive
# has readme.html); hidden files (.DS_Store, ...) are skipped.
FOLDER_EXTRAS = ("readme.html",)


def read_folder(source: Path) -> dict[str, bytes]:
    """The batch files of an extracted ``cifar-10-batches-py/`` folder (``source`` is that
    folder or holds it), read into memory after the same checks as an archive's members:
    exactly the expected files, each a regular file with one link and within the size cap.

    The folder and each file are opened without following links, and each file is checked on
    the descriptor that is read, so a file swapped for a link (or a FIFO) between a check and
    the read is never followed (nor waited on).
    """
    folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and folder.is_symlink():
            raise ArchiveError(
                f"{folder} is a symbolic link; a CIFAR-10 folder is read only where it is. "
                f"Point data.source at the folder it links to ({os.path.realpath(folder)})."
            ) from None
        raise UserError(f"cannot open the folder {folder}: {exc.strerror}.") from None
    try:
        names = {n for n in os.listdir(dfd) if not n.startswith(".")}
        wanted = (*TRAIN_BATCHES, TEST_BATCH, META)
        unexpected = sorted(names - set(wanted) - set(FOLDER_EXTRAS))
        missing = sorted(set(wanted) - names)
        problems = [
            f"{what} {', '.join(files)}"
            for what, files in (("lacks", missing), ("holds unexpected", unexpected))
            if files
        ]
        if problems:
            raise ArchiveError(
                f"{folder} {'; '.join(problems)}; a CIFAR-10 folder is {BATCH_DIR}/ with exactly "
                "data_batch_1..5, test_batch and batches.meta (and readme.html). Point "
                "data.source at that folder, the folder holding it, or cifar-10-python.tar.gz."
            )
        return {f"{BATCH_DIR}/{name}": _read_in(dfd, folder / name) for name in wanted}
    finally:
        os.close(dfd)


def dvc_cache_dirs(root: Path) -> list[Path]:
    """The project's DVC cache folders, real paths: ``.dvc/cache``, or the ``dir`` of the
    ``[cache]`` section of ``.dvc/config`` or ``.dvc/config.local`` (relative to ``.dvc/``)."""
    import configparser

    dirs = [root / ".dvc" / "cache"]
    for name in ("config", "config.local"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_option("cache", "dir"):
            dirs.append(root / ".dvc" / parser.get("cache", "dir").strip().strip("'\""))
    return [Path(os.path.realpath(d)) for d in dirs]


def _cache_object(cache: Path, digest: str) -> Path | None:
    """Where a DVC cache holds the file of this md5 (DVC 3's files/md5/ab/cd…, or DVC 2's
    ab/cd…), if it does."""
    for path in (
        cache / "files" / "md5" / digest[:2] / digest[2:],
        cache / digest[:2] / digest[2:],
    ):
        if path.is_file():
            return path
    return None


def _dvc_linked(path: Path, data: bytes | None, info: os.stat_result | None) -> bytes | None:
    """``path``'s bytes if it is one of DVC's own links into the project's cache (the
    ``symlink`` or ``hardlink`` cache types of a folder tracked with `dvc add`), else None.

    A symbolic link counts when it resolves to a cache object whose name is the md5 of what it
    holds; a hard link (``data`` read, ``info`` its fstat) when the cache object of its md5 is
    the same file (device and inode).  Any other link is refused by the caller."""
    import hashlib

    caches = dvc_cache_dirs(Path.cwd())
    if data is None:  # a symbolic link: follow it only into a cache, then check the object
        target = Path(os.path.realpath(path))
        if not any(target.is_relative_to(c) for c in caches):
            return None
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(MAX_MEMBER_BYTES + 1)
        digest = hashlib.md5(data).hexdigest()
        return data if target.parent.name + target.name == digest else None
    digest = hashlib.md5(data).hexdigest()
    for cache in caches:
        obj = _cache_object(cache, digest)
        if obj is not None:
            cached = obj.stat()
            if (cached.st_dev, cached.st_ino) == (info.st_dev, info.st_ino):
                return data
    return None


def _read_in(dfd: int, path: Path) -> bytes:
    """The bytes of ``path.name`` in the open folder ``dfd``: a regular file with one link, or
    one of DVC's own links into the project's cache (:func:`_dvc_linked`)."""
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            data = _dvc_linked(path, None, None)
            if data is not None and len(data) <= MAX_MEMBER_BYTES:
                return data
            raise ArchiveError(
                f"{path} is a symbolic link, and not one of DVC's into this project's cache; a "
                "CIFAR-10 folder holds regular files (or DVC's links), so it is refused. Copy "
                "the real files in place of links."
            ) from None
        raise UserError(f"cannot read {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveError(
                f"{path} is not a regular file; a CIFAR-10 folder holds regular files only."
            )
        data = f.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise ArchiveError(
            f"{path} is more than {MAX_MEMBER_BYTES} bytes, too large for a CIFAR-10 batch."
        )
    if info.st_nlink != 1 and _dvc_linked(path, data, info) is None:
        raise ArchiveError(
            f"{path} has {info.st_nlink} hard links, and is not DVC's own link into this "
            "project's cache, so it may be a file from elsewhere; refused. Copy the batch files "
            "into a folder of their own."
        )
    return data


# --- the data file ------------------------------------------------------------------


def save(dataset: Dataset, target: Path) -> None:
    """Write the data set as one uncompressed .npz, atomically."""
    write_npz(
        target,
        x_train=dataset.x_train,
        y_train=dataset.y_train,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        classes=np.array(dataset.classes, dtype=str),
        source=np.array(dataset.source, dtype=str),
    )


MAX_SOURCE = 1000  # characters of the source's description: a URL or a path, and a few words


# The most images one batch member can hold (the member cap), so the most a split can have.
MAX_BATCH_IMAGES = MAX_MEMBER_BYTES // PIXELS  # 21,845; CIFAR-10's batches hold 10,000
MAX_TRAIN_IMAGES = len(TRAIN_BATCHES) * MAX_BATCH_IMAGES
# The data file's arrays: (dtype kinds, rank, most bytes), checked before any is read.
DATA_FILE = {
    "x_train": ("u", 4, MAX_TRAIN_IMAGES * PIXELS),
    "y_train": ("iu", 1, MAX_TRAIN_IMAGES * 8),
    "x_test": ("u", 4, MAX_BATCH_IMAGES * PIXELS),
    "y_test": ("iu", 1, MAX_BATCH_IMAGES * 8),
    "classes": ("U", 1, class_names.MAX_CLASSES * class_names.MAX_LENGTH * 4),
    "source": ("U", 0, MAX_SOURCE * 4),
}


def load(path: Path) -> Dataset:
    """Read a data file written by :func:`save` (no pickles; every array's size, dtype and rank
    checked from its header before it is read: files.read_npz)."""
    z = read_npz(path, "download", DATA_FILE, "a data file of this project")
    ds = Dataset(
        z["x_train"],
        z["y_train"],
        z["x_test"],
        z["y_test"],
        tuple(z["classes"].tolist()),
        str(z["source"]),
    )
    way_out = rerun("download")
    problem = class_names.problem(ds.classes)
    if problem:
        raise UserError(f"{path}: {problem}; {way_out}.")
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or len(x) != len(y) or not len(x):
            raise UserError(f"{path}: {split} arrays have unexpected shapes; {way_out}.")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(ds.classes):
            raise UserError(f"{path}: {split} labels are not class indices; {way_out}.")
    return ds


# --- synthetic archives -------------------------------------------------------------


def synthetic_images(n: int, rng: np.random.Generator, templates: np.ndarray, noise: float):
    """``n`` class-conditional images (NHWC uint8) and labels.

    Each class has a blocky colour pattern; an image is its class's pattern, shifted by
    up to 4 pixels, scaled in brightness, blended with a random other class's pattern
    (up to 45%) and covered in Gaussian noise.  A CNN learns it in an epoch or two, but
    the blending and noise keep it from 100%.
    """
    n_classes = len(templates)
    y = rng.integers(0, n_classes, size=n)
    other = (y + rng.integers(1, n_classes, size=n)) % n_classes
    blend = rng.uniform(0.0, 0.45, size=(n, 1, 1, 1))
    img = (1 - blend) * templates[y] + blend * templates[other]
    shift = rng.integers(0, 81, size=n)  # one of 9 x 9 shifts of -4..4 pixels per image
    for s in np.unique(shift):
        rows = shift == s
        img[rows] = np.roll(img[rows], (int(s // 9) - 4, int(s % 9) - 4), axis=(1, 2))
    img *= rng.uniform(0.7, 1.3, size=(n, 1, 1, 1))
    img += rng.normal(0.0, noise, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), y


def _batch_pickle(x: np.ndarray, y: np.ndarray, label: str, classes: tuple[str, ...]) -> bytes:
    data = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), PIXELS)
    batch = {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in y],
        b"data": data,
        b"filenames": [f"synthetic_{classes[v]}_{i:05d}.png".encode() for i, v in enumerate(y)],
    }
    return py2_pickle(batch)


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote CIFAR-10: bytes as STRING opcodes.

    Python 3's own protocol 2 encodes bytes through ``_codecs.encode``, which the real
    batches never contain (the restricted unpickler admits it only to latin-1, for
    Python 3 re-writes of the batches).
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str2(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str2


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_synthetic_archive(
    target: Path, n_train: int, n_test: int, seed: int, noise: float = 120.0
) -> Path:
    """A deterministic archive in exactly CIFAR-10's python format and tar layout."""
    rng = np.random.default_rng(seed)
    # 8x8 colour blocks of 4x4 pixels per class: low-frequency, so shifts keep the class.
    templates = np.kron(rng.uniform(0, 255, size=(len(CLASSES), 8, 8, 3)), np.ones((1, 4, 4, 1)))
    members = {}
    sizes = np.diff(np.linspace(0, n_train, len(TRAIN_BATCHES) + 1).astype(int))
    for i, (name, size) in enumerate(zip(TRAIN_BATCHES, sizes), start=1):
        x, y = synthetic_images(int(size), rng, templates, noise)
        members[name] = _batch_pickle(x, y, f"training batch {i} of 5", CLASSES)
    x, y = synthetic_images(n_test, rng, templates, noise)
    members[TEST_BATCH] = _batch_pickle(x, y, "testing batch 1 of 1", CLASSES)
    members[META] = py2_pickle(
        {
            b"label_names": [c.encode() for c in CLASSES],
            b"num_cases_per_batch": int(sizes[0]),
            b"num_vis": PIXELS,
        }
    )
    with atomic_path(target) as tmp:
        # mtime 0 everywhere: the same params give the same bytes (and md5).
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz,
        ):
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                tar.addfile(_dir_info(BATCH_DIR))
                for name, blob in members.items():
                    info = tarfile.TarInfo(f"{BATCH_DIR}/{name}")
                    info.size, info.mode, info.mtime = len(blob), 0o644, 0
                    tar.addfile(info, io.BytesIO(blob))
    return target


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info
