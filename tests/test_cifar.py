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
    """A batch row is R plane, G plane, B plane; pixel (r, c) of channel k is at k*1024 + 32r + c."""
    batch = pickle.loads(small_members[f"{D}/data_batch_1"], encoding="bytes")
    ds = cifar.parse_archive(write_tar(tmp_path / "a.tar.gz", small_members))
    row = batch[b"data"][3]
    assert ds.x_train[3, 5, 7, 2] == row[2 * 1024 + 5 * 32 + 7]
    assert ds.x_train[3, 0, 1, 0] == row[1]


def test_synthetic_is_deterministic(tmp_path):
    a = cifar.write_synthetic_archive(tmp_path / "a.tar.gz", 50, 20, seed=3)
    b = cifar.write_synthetic_archive(tmp_path / "b.tar.gz", 50, 20, seed=3)
    c = cifar.write_synthetic_archive(tmp_path / "c.tar.gz", 50, 20, seed=4)
    assert cifar.file_md5(a) == cifar.file_md5(b) != cifar.file_md5(c)


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


# --- local sources and downloads -------------------------------------------------------


def test_local_md5_mismatch_is_refused(small_archive):
    with pytest.raises(cifar.ArchiveError, match="does not match data.md5"):
        cifar.check_local(small_archive, "0" * 32)


def test_local_md5_match_is_accepted(small_archive):
    assert cifar.check_local(small_archive, cifar.file_md5(small_archive)) == small_archive


def test_missing_local_file_says_what_to_give(tmp_path):
    with pytest.raises(cifar.UserError, match="is not a file"):
        cifar.check_local(tmp_path / "nope.tar.gz", None)


def test_unreachable_url_names_url_and_the_way_out(tmp_path):
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: refused at once
    with pytest.raises(cifar.UserError) as err:
        cifar.fetch(url, None, tmp_path)
    text = str(err.value)
    assert url in text and "data.source=" in text and "synthetic" in text
    assert list(tmp_path.iterdir()) == []  # no partial download left
