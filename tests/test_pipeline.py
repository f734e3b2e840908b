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


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The whole pipeline on tiny synthetic data: 1 epoch, 2 seeds, every variant."""
    proj = make_project(tmp_path_factory.mktemp("full"))
    raw = proj.params()
    raw["train"].update({"epochs": 1, "seeds": [0, 1]})
    proj.set_params(raw)
    proj.commit("tiny run")
    proj.dvc("repro")
    return proj


def test_every_variant_has_metrics_and_plot_data(full_run):
    variants = list(full_run.params()["variants"])
    assert len(variants) == 8
    for name in variants:
        res = full_run.path / "results" / name
        metrics = json.loads((res / "metrics.json").read_text())
        assert metrics["seeds"] == 2 and 0 <= metrics["micro_f1"] <= 1
        assert {"micro_f1_std", "macro_f1", "macro_f1_std", "test_loss"} <= set(metrics)
        for seed in (0, 1):
            assert (full_run.path / "models" / name / f"seed_{seed}.pt").is_file()
        curve = (res / "live/plots/metrics/test/acc.tsv").read_text().splitlines()
        assert curve[0] == "step\tacc" and len(curve) == 2  # header + 1 epoch
        assert (res / "live/plots/metrics/seed_1/train/loss.tsv").is_file()
        assert (res / "confusion.csv").read_text().startswith("actual,predicted\n")
    shown = full_run.dvc("metrics", "show", "--json").stdout
    assert all(f"results/{name}/metrics.json" in shown for name in variants)


def test_rerun_is_a_no_op_and_one_knob_reruns_one_variant(full_run):
    assert "Running stage" not in full_run.dvc("repro").stdout
    raw = full_run.params()
    raw["variants"]["dropout_conv"]["dropout_conv"] = 0.3
    full_run.set_params(raw)
    out = full_run.dvc("repro").stdout
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["compare", "evaluate@dropout_conv", "train@dropout_conv"]
    assert "variants.dropout_conv.dropout_conv" in full_run.dvc("params", "diff").stdout


def test_compare_covers_every_variant(full_run):
    table = json.loads((full_run.path / "compare/comparison.json").read_text())
    variants = list(full_run.params()["variants"])
    assert list(table["variants"]) == variants
    assert table["variants"]["dropout_both"]["vs_parent"] == "init_weights"
    assert table["variants"]["norm_inputs"]["vs_parent"] == "baseline"
    assert (full_run.path / "compare/micro_f1.png").stat().st_size > 10_000
    md = (full_run.path / "compare/comparison.md").read_text()
    assert all(f"| {name} |" in md for name in variants)
    curves = (full_run.path / "compare/curves.csv").read_text().splitlines()
    assert len(curves) == 1 + len(variants)  # 1 epoch each


def test_metrics_diff_between_branches(full_run):
    full_run.commit("results on main")
    full_run.git("checkout", "-q", "-b", "more-dropout")
    raw = full_run.params()
    raw["variants"]["dropout_dense"]["dropout_dense"] = 0.5
    full_run.set_params(raw)
    full_run.dvc("repro")
    full_run.commit("dropout_dense 0.5")
    diff = json.loads(full_run.dvc("metrics", "diff", "main", "--json").stdout)
    changed = {path for path, values in diff.items() if values}
    assert changed == {"results/dropout_dense/metrics.json"}
    assert "test_loss" in diff["results/dropout_dense/metrics.json"]


def test_plots_show_writes_a_page_with_the_chart(full_run, tmp_path):
    out = tmp_path / "plots"
    full_run.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "micro_f1.png" in html
    assert "test accuracy per epoch" in html and "confusion.csv" in html
    pngs = list(out.rglob("*micro_f1.png"))
    assert pngs and pngs[0].read_bytes()[:4] == b"\x89PNG"
    full_run.dvc("plots", "diff", "main", "-o", str(tmp_path / "diff"))
    assert (tmp_path / "diff" / "index.html").is_file()
