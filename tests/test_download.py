"""The download stage's sources: local archives checked against an md5, URLs that fail clearly."""

from __future__ import annotations

import hashlib

import pytest

from stages import cifar, download
from stages.io import UserError


def test_local_md5_mismatch_is_refused(small_archive):
    with pytest.raises(cifar.ArchiveError, match="does not match data.md5"):
        download.check_local(small_archive, "0" * 32)


def test_local_md5_match_is_accepted(small_archive):
    assert (
        download.check_local(small_archive, hashlib.md5(small_archive.read_bytes()).hexdigest())
        == small_archive
    )


def test_missing_local_file_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match="is not a file or a folder"):
        download.check_local(tmp_path / "nope.tar.gz", None)


def test_unreachable_url_names_url_and_the_way_out(tmp_path):
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: refused at once
    with pytest.raises(UserError) as err:
        download.fetch(url, None, tmp_path)
    text = str(err.value)
    assert url in text and "data.source=" in text and "synthetic" in text
    assert list(tmp_path.iterdir()) == []  # no partial download left
