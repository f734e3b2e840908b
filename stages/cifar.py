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

import gzip
import io
import pickle
import stat
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from stages.io import UserError, atomic_path, write_npz

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3  # one row of a batch's `data`: 1024 red, then green, then blue
# A real member is about 31 MB; anything far larger is not a CIFAR batch (or is a bomb).
MAX_MEMBER_BYTES = 256 * 2**20


class ArchiveError(UserError):
    """The archive is not a well-formed CIFAR-10 python-format archive."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


# --- reading safely -----------------------------------------------------------------


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as pickle uses it: Python 3 writes every ``bytes`` object at protocol
    <= 2 as ``_codecs.encode(str, 'latin1')``.  Only that encoding is admitted: a pure
    conversion, never a codec lookup by a name the file chooses."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than of a str to latin1")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: dicts, lists, bytes, str, ints and NumPy arrays.

    Globals admitted: NumPy's array and dtype rebuilders (``_reconstruct`` for protocols
    0-4, ``_frombuffer`` for protocol 5, under NumPy 1's and 2's module names) and
    ``_codecs.encode`` to latin-1 (bytes as Python 3 pickles them at protocol <= 2).
    Everything else is refused before it can run.
    """

    _reconstruct = np.zeros(0).__reduce__()[0]  # numpy's array rebuilders, wherever they live
    _frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch never contains it"
            ) from None


def unpickle(blob: bytes, member: str):
    try:
        return RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
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
            f"{archive}: member {member.name!r} is {member.size} bytes, too large for CIFAR-10."
        )


def read_members(archive: Path) -> dict[str, bytes]:
    """The batch files of ``archive``, read into memory after every member is checked."""
    wanted = {f"{BATCH_DIR}/{n}" for n in (*TRAIN_BATCHES, TEST_BATCH, META)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(member, archive)
                name = str(PurePosixPath(member.name))
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read()
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
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ArchiveError(
            f"{member}: label {int(y.min() if y.min() < 0 else y.max())} is outside "
            f"0..{n_classes - 1}."
        )
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
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


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
    exactly the expected files, regular files only (no links), each within the size cap."""
    folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
    wanted = (*TRAIN_BATCHES, TEST_BATCH, META)
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
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
            "data_batch_1..5, "
            "test_batch and batches.meta (and readme.html). Point data.source at that folder, the "
            "folder holding it, or cifar-10-python.tar.gz."
        )
    found = {}
    for name in wanted:
        path = folder / name
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise ArchiveError(
                f"{path} is {kind}; a CIFAR-10 folder holds regular files only, so it is "
                "refused. Copy the real files in place of links."
            )
        if info.st_size > MAX_MEMBER_BYTES:
            raise ArchiveError(f"{path} is {info.st_size} bytes, too large for a CIFAR-10 batch.")
        found[f"{BATCH_DIR}/{name}"] = path.read_bytes()
    return found


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
    )


def load(path: Path) -> Dataset:
    """Read a data file written by :func:`save` (no pickles allowed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ds = Dataset(
                z["x_train"], z["y_train"], z["x_test"], z["y_test"], tuple(z["classes"].tolist())
            )
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; it is made by the `download` stage: run `dvc repro download`."
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"{path} is not a data file of this project ({exc}); rerun `dvc repro -f download`."
        ) from None
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or len(x) != len(y):
            raise UserError(
                f"{path}: {split} arrays have unexpected shapes; rerun `dvc repro -f download`."
            )
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
