"""Reading CIFAR-10 archives: the format, the checks, and hostile input."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest

from stages import cifar
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
    with pytest.raises(cifar.ArchiveError, match="labels are a float64 array"):
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
    with pytest.raises(cifar.ArchiveError, match="data_batch_2: data is float32"):
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
    from stages import download, params

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
