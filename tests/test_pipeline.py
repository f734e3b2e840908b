"""End to end: the real `dvc repro` in a temporary git repository, on synthetic data."""

from __future__ import annotations

import json

import pytest

from tests.dvc_project import make_project

pytestmark = pytest.mark.e2e


def test_download_and_stats_stages(tmp_path):
    proj = make_project(tmp_path)
    proj.dvc("repro", "download", "stats")
    stats = json.loads((tmp_path / "data/stats.json").read_text())
    assert len(stats["mean"]) == 3 and all(0 < s < 0.5 for s in stats["std"])
    assert stats["n_images"] == 500
    status = proj.dvc("status", "download", "stats").stdout
    assert "up to date" in status
    again = proj.dvc("repro", "download", "stats").stdout
    assert "Running stage" not in again and "didn't change" in again

    # An edit to a section the stages do not read reruns neither of them.
    raw = proj.params()
    raw["train"]["epochs"] = 3
    proj.set_params(raw)
    assert "Running stage" not in proj.dvc("repro", "download", "stats").stdout


def test_offline_download_fails_cleanly(tmp_path):
    proj = make_project(tmp_path)
    raw = proj.params()
    raw["data"]["source"] = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    proj.set_params(raw)
    out = proj.dvc("repro", "download", check=False)
    assert out.returncode != 0
    assert "cannot download http://127.0.0.1:9/cifar-10-python.tar.gz" in out.stderr
    assert "dvc exp run -S data.source=" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data/cifar10.npz").exists()
