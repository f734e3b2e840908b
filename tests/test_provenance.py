"""What made a result: the data file's md5, the CPU's name, the line comparison.md opens with."""

from __future__ import annotations

import hashlib

from cifar10_tricks import provenance
from tests.conftest import MADE_BY


def test_file_md5_is_hashlibs_over_the_whole_file(tmp_path):
    blob = bytes(range(256)) * 9000  # more than one 1 MiB block
    (tmp_path / "d.npz").write_bytes(blob)
    assert provenance.file_md5(tmp_path / "d.npz") == hashlib.md5(blob).hexdigest()


def test_the_cpu_has_a_name():
    assert provenance.cpu_name().strip()


def test_describe_names_data_sizes_schedule_device_and_versions():
    line = provenance.describe(MADE_BY)
    assert line.startswith("Data: synthetic: generated images (seed 0, noise 120) (500 train")
    for part in ("md5 " + "0" * 32, "1 epoch(s), batch 64, seeds 3, 5", "cpu (a test CPU), fp32"):
        assert part in line
    assert "1 seed(s) per step" in line and line.endswith("torch 2.x.")
    many = provenance.describe({**MADE_BY, "seeds": list(range(40))})
    assert "seeds 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (40 in all)" in many


def test_synthetic_data_is_told_apart_from_cifar10():
    assert provenance.is_synthetic(MADE_BY)
    real = {**MADE_BY, "data": {**MADE_BY["data"], "source": "cifar10: https://x (md5 c5)"}}
    assert not provenance.is_synthetic(real)
