"""Reading CIFAR-10 archives: the format, the checks, and hostile input."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from cifar10_tricks import cifar
from tests.conftest import write_tar

D = cifar.BATCH_DIR


def test_synthetic_archive_has_cifar10_layout(small_archive):
    with tarfile.open(small_archive) as tar:
        names = set(tar.getnames())
    expected = {f"{D}/{n}" for n in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH, cifar.META)}
    assert expected <= names


def test_batches_unpickle_like_the_real_format(small_members):
    """The standard recipe from the CIFAR-10 page reads our batches (bytes keys, uint8 rows)."""
    batch = pickle.loads(small_members[f"{D}/data_batch_1"], encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (50, 3072)
    assert b"_codecs" not in small_members[f"{D}/data_batch_1"][:200]


def test_parse_synthetic_archive(small_archive):
    ds = cifar.parse_archive(small_archive)
    assert ds.x_train.shape == (250, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (60, 32, 32, 3)
    assert ds.y_train.dtype == np.int64 and 0 <= ds.y_train.min() and ds.y_train.max() <= 9
    assert ds.classes == cifar.CLASSES
    assert len(np.unique(ds.y_train)) == 10


def test_rows_are_channel_planes(tmp_path, small_members):
    """A batch row is R, G, B planes; pixel (r, c) of channel k is at k*1024 + 32r + c."""
    batch = pickle.loads(small_members[f"{D}/data_batch_1"], encoding="bytes")
    ds = cifar.parse_archive(write_tar(tmp_path / "a.tar.gz", small_members))
    row = batch[b"data"][3]
    assert ds.x_train[3, 5, 7, 2] == row[2 * 1024 + 5 * 32 + 7]
    assert ds.x_train[3, 0, 1, 0] == row[1]


def test_synthetic_is_deterministic(tmp_path):
    a = cifar.write_synthetic_archive(tmp_path / "a.tar.gz", 50, 20, seed=3)
    b = cifar.write_synthetic_archive(tmp_path / "b.tar.gz", 50, 20, seed=3)
    c = cifar.write_synthetic_archive(tmp_path / "c.tar.gz", 50, 20, seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_save_load_roundtrip(tmp_path, small_archive):
    ds = cifar.parse_archive(small_archive)
    cifar.save(ds, tmp_path / "d.npz")
    back = cifar.load(tmp_path / "d.npz")
    assert np.array_equal(back.x_train, ds.x_train) and np.array_equal(back.y_test, ds.y_test)
    assert back.classes == ds.classes
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temp file left


# --- hostile and broken archives ------------------------------------------------------


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({b"data": _RunsCode(marker)}, protocol=2)
    with pytest.raises(cifar.ArchiveError, match="refusing to load global"):
        cifar.unpickle(blob, "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_code_pickle_is_refused_at_every_protocol(tmp_path, protocol):
    marker = tmp_path / "pwned"
    for payload in (_RunsCode(marker), {"data": _RunsCode(marker)}, [_RunsCode(marker)]):
        with pytest.raises(cifar.ArchiveError, match="refusing to load global"):
            cifar.unpickle(pickle.dumps(payload, protocol=protocol), "data_batch_1")
    assert not marker.exists()


class _CodecCall:
    """_codecs.encode with a codec the file picks (not latin1): still refused."""

    def __reduce__(self):
        import codecs

        return (codecs.encode, ("payload", "rot13"))


def test_codecs_encode_is_admitted_only_to_latin1():
    with pytest.raises(
        cifar.ArchiveError, match="refusing _codecs.encode other than of a str to latin1"
    ):
        cifar.unpickle(pickle.dumps(_CodecCall(), protocol=2), "data_batch_1")


def _py3_members(
    members: dict[str, bytes], protocol: int, str_keys: bool, labels_as: str
) -> dict[str, bytes]:
    """The batches re-written as a Python 3 script would: pickle.dumps at ``protocol``, keys
    and class names as str or bytes, labels as a list or an integer array."""
    out = {}
    for name, blob in members.items():
        obj = pickle.loads(blob, encoding="bytes")
        if name.endswith(cifar.META):
            obj[b"label_names"] = [n.decode() if str_keys else n for n in obj[b"label_names"]]
        elif labels_as != "list":
            obj[b"labels"] = np.asarray(obj[b"labels"], dtype=labels_as)
        if str_keys:
            obj = {k.decode(): v for k, v in obj.items()}
        out[name] = pickle.dumps(obj, protocol=protocol)
    return out


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(
    "str_keys,labels_as", [(True, "list"), (False, "int64"), (True, "int32"), (True, "uint8")]
)
def test_python3_rewritten_archives_are_read(
    tmp_path, small_members, small_archive, protocol, str_keys, labels_as
):
    """What torchvision's reader accepts, ours does: Python 3 pickles at protocols 0-5, str or
    bytes keys and class names, labels as a list or an integer array - same data out."""
    members = _py3_members(small_members, protocol, str_keys, labels_as)
    if protocol <= 2:  # Python 3 writes bytes through _codecs.encode there
        assert b"_codecs" in members[f"{D}/data_batch_1"]
    ds = cifar.parse_archive(write_tar(tmp_path / "py3.tar.gz", members))
    ref = cifar.parse_archive(small_archive)
    assert np.array_equal(ds.x_train, ref.x_train) and np.array_equal(ds.y_test, ref.y_test)
    assert ds.classes == ref.classes == cifar.CLASSES


def test_float_labels_are_refused(tmp_path, small_members):
    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": np.array([0.0, 1.0])}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "data_batch_1", bad))
    with pytest.raises(
        cifar.ArchiveError,
        match="refusing dtype .f8.: a CIFAR-10 batch holds uint8 pixels and integer labels",
    ):
        cifar.parse_archive(archive)


def test_archive_with_code_pickle_is_refused(tmp_path, small_members):
    marker = tmp_path / "pwned"
    members = dict(small_members)
    members[f"{D}/test_batch"] = pickle.dumps(_RunsCode(marker), protocol=2)
    with pytest.raises(cifar.ArchiveError, match="test_batch is not a safe"):
        cifar.parse_archive(write_tar(tmp_path / "evil.tar.gz", members))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", f"{D}/../../escape", "/etc/evil"])
def test_unsafe_member_paths_are_refused(tmp_path, small_members, name):
    archive = write_tar(tmp_path / "a.tar.gz", {**small_members, name: b"x"})
    with pytest.raises(cifar.ArchiveError, match="unsafe path"):
        cifar.parse_archive(archive)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_link_members_are_refused(tmp_path, small_members, kind):
    link = tarfile.TarInfo(f"{D}/readme.html")
    link.type, link.linkname = kind, "/etc/passwd"
    archive = write_tar(tmp_path / "a.tar.gz", small_members, extra=[link])
    with pytest.raises(cifar.ArchiveError, match="link member"):
        cifar.parse_archive(archive)


def test_missing_batch_is_named(tmp_path, small_members):
    members = {k: v for k, v in small_members.items() if not k.endswith("data_batch_3")}
    with pytest.raises(cifar.ArchiveError, match="data_batch_3"):
        cifar.parse_archive(write_tar(tmp_path / "a.tar.gz", members))


@pytest.mark.parametrize("content", [b"", b"this is not an archive\n" * 10])
def test_non_archive_files_are_refused(tmp_path, content):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(content)
    with pytest.raises(cifar.ArchiveError, match="not a readable tar archive"):
        cifar.parse_archive(path)


def test_truncated_archive_is_refused(tmp_path, small_archive):
    blob = small_archive.read_bytes()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(cifar.ArchiveError):
        cifar.parse_archive(path)


def _with_batch(members, name, batch):
    return {**members, f"{D}/{name}": cifar.py2_pickle(batch)}


def test_wrong_dtype_is_refused(tmp_path, small_members):
    bad = {b"data": np.zeros((5, 3072), dtype=np.float32), b"labels": [0] * 5}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "data_batch_2", bad))
    with pytest.raises(
        cifar.ArchiveError, match="data_batch_2 is not a safe CIFAR-10 batch: refusing dtype .f4."
    ):
        cifar.parse_archive(archive)


def test_wrong_shape_is_refused(tmp_path, small_members):
    bad = {b"data": np.zeros((5, 1024), dtype=np.uint8), b"labels": [0] * 5}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "test_batch", bad))
    with pytest.raises(cifar.ArchiveError, match="uint8 rows of 3072"):
        cifar.parse_archive(archive)


def test_label_out_of_range_is_refused(tmp_path, small_members):
    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "data_batch_1", bad))
    with pytest.raises(cifar.ArchiveError, match="label 10 is outside 0..9"):
        cifar.parse_archive(archive)


def test_label_count_mismatch_is_refused(tmp_path, small_members):
    bad = {b"data": np.zeros((3, 3072), dtype=np.uint8), b"labels": [0, 1]}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "data_batch_1", bad))
    with pytest.raises(cifar.ArchiveError, match="expected 3 labels"):
        cifar.parse_archive(archive)


# --- extracted folders ----------------------------------------------------------------


def _extract(members: dict[str, bytes], root) -> os.PathLike:
    """An extracted copy as torchvision's CIFAR10(root, download=True) leaves it."""
    folder = root / D
    folder.mkdir(parents=True)
    for name, blob in members.items():
        (root / name).write_bytes(blob)
    (folder / "readme.html").write_text("<html></html>")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    return folder


def test_extracted_folder_is_read_like_the_archive(tmp_path, small_members, small_archive, caplog):
    from cifar10_tricks import params
    from stages import download

    folder = _extract(small_members, tmp_path / "root")
    ref = cifar.parse_archive(small_archive)
    for source in (tmp_path / "root", folder):  # the folder holding it, or the folder itself
        with caplog.at_level("INFO"):
            ds = download.read_source(params.DataParams(source=str(source), md5="0" * 32), tmp_path)
        assert np.array_equal(ds.x_train, ref.x_train) and ds.classes == ref.classes
        assert "is a folder" in caplog.text and "not applied" in caplog.text  # the md5 note


def test_folder_with_a_link_is_refused(tmp_path, small_members):
    folder = _extract(small_members, tmp_path / "root")
    outside = tmp_path / "elsewhere"
    outside.write_bytes((folder / "test_batch").read_bytes())
    (folder / "test_batch").unlink()
    (folder / "test_batch").symlink_to(outside)
    with pytest.raises(cifar.ArchiveError, match="test_batch is a symbolic link"):
        cifar.read_folder(folder)


def test_folder_with_missing_or_unexpected_files_is_refused(tmp_path, small_members):
    folder = _extract(small_members, tmp_path / "root")
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_6").write_bytes(b"x")
    with pytest.raises(
        cifar.ArchiveError, match="lacks data_batch_3; holds unexpected data_batch_6"
    ):
        cifar.read_folder(tmp_path / "root")


def test_folder_with_a_code_pickle_is_refused(tmp_path, small_members):
    marker = tmp_path / "pwned"
    folder = _extract(small_members, tmp_path / "root")
    (folder / "batches.meta").write_bytes(pickle.dumps(_RunsCode(marker), protocol=4))
    with pytest.raises(cifar.ArchiveError, match="batches.meta is not a safe"):
        cifar.parse_members(cifar.read_folder(folder), folder)
    assert not marker.exists()


# --- crafted arrays, names and sizes ----------------------------------------------------------

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's own _reconstruct, pickled by its name


class _Reduce:
    """Pickles as ``fn(*args)`` followed by ``__setstate__(state)``: how a crafted file would
    spell NumPy's rebuilders, without ever building the object here."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _dtype(spec, state):
    return _Reduce(np.dtype, (spec, False, True), state)


def _crafted_batches():
    """Pickled batches that NumPy itself would turn into memory corruption or a huge array."""
    objects = _dtype("O8", (3, "|", None, None, None, -1, -1, 63))
    # flags 1 (NPY_ITEM_REFCOUNT): freeing the array decrefs 0x4141... as a pointer: SIGSEGV
    structured = _dtype("V8", (3, "|", None, ("f0",), {"f0": (objects, 0)}, 8, 1, 1))
    plain = _dtype("u1", (3, "|", None, None, None, -1, -1, 0))
    structured_array = _Reduce(
        _RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (4,), structured, False, b"\x41" * 32)
    )
    stride_zero = _Reduce(np.ndarray, ((10**6, 3072), plain, b"x" * 3072, 0, (0, 1)))
    short_data = _Reduce(
        _RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**6, 3072), plain, False, b"x" * 3072)
    )
    return {
        "object field": (structured_array, r"refusing dtype '(V8|O8)'"),
        "stride 0": (stride_zero, "refusing to call numpy.ndarray"),
        "shape beyond its bytes": (short_data, "data hold 3072 bytes, not 3072000000"),
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", list(_crafted_batches()))
def test_crafted_arrays_are_refused_before_numpy_builds_them(
    tmp_path, small_members, kind, protocol
):
    data, message = _crafted_batches()[kind]
    blob = pickle.dumps({b"data": data, b"labels": [0] * 4}, protocol=protocol)
    with pytest.raises(cifar.ArchiveError, match=message):
        cifar.unpickle(blob, "data_batch_1")
    members = {**small_members, f"{D}/data_batch_1": blob}
    with pytest.raises(cifar.ArchiveError, match=message):  # in an archive, and in a folder
        cifar.parse_archive(write_tar(tmp_path / "a.tar.gz", members))
    folder = _extract(members, tmp_path / "root")
    with pytest.raises(cifar.ArchiveError, match=message):
        cifar.parse_members(cifar.read_folder(folder), folder)


@pytest.mark.parametrize("dtype", ["<i8", ">i8", "<i4", ">u2", "u1"])
def test_integer_arrays_in_either_byte_order_are_read(dtype):
    labels = np.array([3, 1, 4, 1, 5], dtype=dtype)
    for protocol in (2, 5):
        back = cifar.unpickle(pickle.dumps({"labels": labels}, protocol=protocol), "b")["labels"]
        assert back.dtype == labels.dtype and back.tolist() == [3, 1, 4, 1, 5]


@pytest.mark.parametrize(
    "names, message",
    [
        ([b"cat", b"</script><script>alert(1)</script>"], "is not allowed"),
        ([b"accuracy", b"dog"], "collides with scikit-learn's report key"),
        ([b"macro avg", b"dog"], "collides with scikit-learn's report key"),
        ([b"cat", b"Cat"], "is given twice"),
        ([b"cat", b" dog"], "is not allowed"),
        ([b"c" * 65, b"dog"], "is not allowed"),
        ([b"cat"], "1 class names"),
        ([b"n%d" % i for i in range(20000)], "20000 label_names; at most 1000"),
    ],
)
def test_class_names_are_checked_text(tmp_path, small_members, names, message):
    meta = cifar.py2_pickle({b"label_names": names})
    members = {**small_members, f"{D}/batches.meta": meta}
    with pytest.raises(cifar.ArchiveError, match=message):
        cifar.parse_archive(write_tar(tmp_path / "a.tar.gz", members))


def test_a_huge_label_is_named_not_overflowed(tmp_path, small_members):
    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 2**63]}
    archive = write_tar(tmp_path / "a.tar.gz", _with_batch(small_members, "data_batch_2", bad))
    with pytest.raises(cifar.ArchiveError, match=f"label {2**63} is outside 0..9"):
        cifar.parse_archive(archive)


def test_archive_bombs_are_refused_from_their_headers(tmp_path, small_members):
    many = {**small_members, **{f"{D}/extra_{i}": b"" for i in range(cifar.MAX_MEMBERS)}}
    with pytest.raises(cifar.ArchiveError, match="more than 64 members"):
        cifar.read_members(write_tar(tmp_path / "many.tar.gz", many))
    big = tarfile.TarInfo(f"{D}/data_batch_1")
    big.size = cifar.MAX_MEMBER_BYTES + 1
    with tarfile.open(tmp_path / "big.tar", "w") as tar:  # a header claiming 64 MiB + 1
        tar.addfile(big, io.BytesIO(bytes(big.size)))
    with pytest.raises(cifar.ArchiveError, match="more than a CIFAR-10 batch's"):
        cifar.read_members(tmp_path / "big.tar")


def test_archive_whose_members_add_up_past_the_cap_is_refused(tmp_path):
    """Five members of 60 MiB: each under the member cap, 300 MiB in all (1.5 MB gzipped)."""
    size = 60 * 2**20
    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz", compresslevel=1) as tar:
        for i in range(5):
            info = tarfile.TarInfo(f"{D}/filler_{i}")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    with pytest.raises(cifar.ArchiveError, match="or 268435456 bytes"):
        cifar.read_members(tmp_path / "bomb.tar.gz")


def test_a_linked_folder_is_refused(tmp_path, small_members):
    folder = _extract(small_members, tmp_path / "elsewhere")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / D).symlink_to(folder, target_is_directory=True)
    with pytest.raises(cifar.ArchiveError, match=f"{D} is a symbolic link.*Point data.source"):
        cifar.read_folder(tmp_path / "root")
    with pytest.raises(cifar.ArchiveError, match="is a symbolic link"):
        cifar.read_folder(tmp_path / "root" / D)


def test_a_hard_link_to_an_outside_file_is_refused(tmp_path, small_members):
    folder = _extract(small_members, tmp_path / "root")
    outside = tmp_path / "outside"
    (folder / "test_batch").rename(outside)
    os.link(outside, folder / "test_batch")
    with pytest.raises(cifar.ArchiveError, match="test_batch has 2 hard links"):
        cifar.read_folder(folder)


def test_a_fifo_in_place_of_a_batch_is_refused_without_waiting(tmp_path, small_members):
    folder = _extract(small_members, tmp_path / "root")
    (folder / "test_batch").unlink()
    os.mkfifo(folder / "test_batch")  # no writer: a blocking open would wait forever
    with pytest.raises(cifar.ArchiveError, match="test_batch is not a regular file"):
        cifar.read_folder(folder)


def test_a_hand_edited_data_file_is_refused(tmp_path, small_archive):
    ds = cifar.parse_archive(small_archive)
    y = ds.y_train.copy()
    y[0] = 10
    np.savez(
        tmp_path / "d.npz",
        x_train=ds.x_train,
        y_train=y,
        x_test=ds.x_test,
        y_test=ds.y_test,
        classes=np.array(ds.classes),
        source=np.array("synthetic"),
    )
    with pytest.raises(cifar.UserError, match="train labels are not class indices.*-f download"):
        cifar.load(tmp_path / "d.npz")
    (tmp_path / "torn.npz").write_bytes((tmp_path / "d.npz").read_bytes()[:5000])
    with pytest.raises(cifar.UserError, match="not a data file of this project.*-f download"):
        cifar.load(tmp_path / "torn.npz")


def test_the_data_file_keeps_its_source_and_refuses_one_that_is_not_a_line(tmp_path, small_archive):
    ds = dataclasses.replace(cifar.parse_archive(small_archive), source="synthetic: seed 7")
    cifar.save(ds, tmp_path / "d.npz")
    assert cifar.load(tmp_path / "d.npz").source == "synthetic: seed 7"
    fields = dict(np.load(tmp_path / "d.npz"))
    for bad in (np.array(["a", "b"]), np.array(7), np.array("x" * (cifar.MAX_SOURCE + 1))):
        np.savez(tmp_path / "e.npz", **{**fields, "source": bad})
        with pytest.raises(cifar.UserError, match=r"not a data file .*: source (is|claims) "):
            cifar.load(tmp_path / "e.npz")


# --- memory bounded by design: a small file never claims gigabytes --------------------------

# Runs in a fresh process: what reading ``path`` with ``call`` costs in peak memory (MB) above
# the process's peak after its imports, and the error it ends with.
_PEAK = """
import resource, sys
from pathlib import Path
from cifar10_tricks import cifar, predictions
from cifar10_tricks.errors import UserError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
    said = "read"
except UserError as exc:
    said = str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024)
print(said)
"""


def _peak_mb(call: str) -> tuple[float, str]:
    from tests.conftest import run_python

    out = run_python("-c", _PEAK.format(call=call), check=True).stdout.splitlines()
    return float(out[0]), out[1]


def test_a_pickle_that_builds_gigabytes_from_a_small_archive_is_refused_in_bounded_memory(
    tmp_path, small_members
):
    """A .tar.gz under 1 MB (the bomb itself gzips to about 100 KB) whose batches.meta appends
    new lists 30 million times (gigabytes of lists from 60 MB of opcodes): refused from its
    opcodes, before unpickling."""
    bomb = b"\x80\x02]" + b"]a" * 30_000_000 + b"."
    archive = write_tar(tmp_path / "bomb.tar.gz", {**small_members, f"{D}/batches.meta": bomb})
    assert archive.stat().st_size < 1_000_000
    grown, said = _peak_mb(f"cifar.parse_archive(Path({str(archive)!r}))")
    assert "batches.meta is a pickle of more than 200,000 operations" in said
    assert grown < 300, grown  # the archive's members in memory, nothing they would build


def test_a_deflated_npz_that_claims_gigabytes_is_refused_from_its_headers(tmp_path):
    """Predictions and data files come from a shared DVC remote: a 2 MB .npz whose deflated
    y_true inflates to 2 GB, or whose header claims a shape past its bytes, is refused before
    the allocation (files.read_npz)."""
    import zipfile

    from cifar10_tricks import predictions
    from tests.conftest import write_predictions

    write_predictions(tmp_path / "p.npz")
    fields = dict(np.load(tmp_path / "p.npz"))
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in fields.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                if name == "y_true":  # 250 million int64 zeros: 2 GB, about 2 MB deflated
                    header = {"descr": "<i8", "fortran_order": False, "shape": (250_000_000,)}
                    np.lib.format.write_array_header_1_0(f, header)
                    for _ in range(250):
                        f.write(bytes(8_000_000))
                else:
                    np.lib.format.write_array(f, value)
    assert bomb.stat().st_size < 5_000_000
    grown, said = _peak_mb(f"predictions.read(Path({str(bomb)!r}), 'train@v-0-1')")
    assert "not a usable predictions file" in said and "y_true claims" in said, said
    assert grown < 100, grown
    lying = tmp_path / "lying.npz"  # a header that claims far more than its few bytes
    with zipfile.ZipFile(lying, "w") as z:
        for name, value in fields.items():
            with z.open(f"{name}.npy", "w") as f:
                if name == "pred":
                    header = {"descr": "<i8", "fortran_order": False, "shape": (2, 10**9)}
                    np.lib.format.write_array_header_1_0(f, header)
                else:
                    np.lib.format.write_array(f, value)
    with pytest.raises(cifar.UserError, match=r"pred claims \(2, 1000000000\)"):
        predictions.read(lying, "train@v-0-1")


def test_a_data_file_past_the_largest_real_split_is_refused_before_it_is_read(tmp_path):
    """A data file claiming more training images than five batch members can hold (the stats
    stage would turn them into gigabytes) is refused from its header."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        with z.open("x_train.npy", "w") as f:
            shape = (cifar.MAX_TRAIN_IMAGES + 1, 32, 32, 3)
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(cifar.UserError, match=r"not a data file .*x_train claims"):
        cifar.load(tmp_path / "d.npz")


def test_the_predictions_cap_on_test_images_covers_the_largest_test_batch():
    from cifar10_tricks import predictions

    assert predictions.MAX_TEST_IMAGES >= cifar.MAX_BATCH_IMAGES


@pytest.mark.e2e
@pytest.mark.parametrize("cache_type", ["symlink", "hardlink"])
def test_a_folder_tracked_by_dvc_with_a_link_cache_type_is_read(
    tmp_path, small_members, monkeypatch, cache_type
):
    """`dvc add` of the extracted folder under DVC's symlink or hardlink cache type leaves each
    batch a link into the project's cache: DVC's own, so it is read; the same kind of link to
    a file anywhere else is still refused."""
    import subprocess
    import sys

    from cifar10_tricks.testing import run_env

    project = tmp_path / "project"
    folder = _extract(small_members, project / "data")
    env = run_env()

    def dvc(*args):
        subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=project,
            env=env,
            check=True,
            capture_output=True,
        )

    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc("init", "-q")
    dvc("config", "cache.type", cache_type)
    dvc("add", "-q", str(folder.relative_to(project)))
    batch = folder / "data_batch_1"
    assert batch.is_symlink() if cache_type == "symlink" else batch.stat().st_nlink == 2
    monkeypatch.chdir(project)
    assert cifar.read_folder(folder) == cifar.read_folder(_extract(small_members, tmp_path / "x"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(batch.read_bytes())
    batch.unlink()
    if cache_type == "symlink":
        batch.symlink_to(elsewhere)
    else:
        os.link(elsewhere, batch)
    with pytest.raises(cifar.ArchiveError, match="not one of DVC's|not DVC's own link"):
        cifar.read_folder(folder)
