"""The comparison: CIs, Welch's test, verdicts, ladder parents, and the files it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from stages import compare, params


def test_mean_ci_uses_student_t():
    mean, std, low, high = compare.mean_ci([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02)
    half = sps.t.ppf(0.975, 2) * 0.02 / np.sqrt(3)
    assert (low, high) == pytest.approx((0.72 - half, 0.72 + half))
    assert compare.mean_ci([0.5]) == (0.5, 0.0, None, None)


def test_welch_matches_scipy_and_gives_verdicts():
    a, b = [0.80, 0.81, 0.82], [0.70, 0.71, 0.69]
    t = compare.welch(a, b, 0.05)
    assert t.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert t.diff == pytest.approx(0.11) and t.verdict == "helps"
    assert compare.welch(b, a, 0.05).verdict == "hurts"
    noisy = compare.welch([0.70, 0.75, 0.72], [0.71, 0.69, 0.74], 0.05)
    assert noisy.verdict == "no detectable effect" and noisy.p > 0.05


def test_welch_edge_cases():
    assert compare.welch([0.5], [0.4], 0.05).p is None
    assert compare.welch([0.5, 0.5], [0.5, 0.5], 0.05).verdict == "no detectable effect"
    assert compare.welch([0.6, 0.6], [0.5, 0.5], 0.05).verdict == "helps"


def test_parents_default_to_previous_rung():
    names = ["baseline", "a", "b", "c"]
    assert compare.parent_of(names, "baseline", {}) is None
    assert compare.parent_of(names, "b", {}) == "a"
    assert compare.parent_of(names, "c", {"c": "a"}) == "a"


def test_table_in_ladder_order_with_baseline_and_parent():
    scores = {"baseline": [0.5, 0.52, 0.51], "x": [0.6, 0.61, 0.62], "y": [0.6, 0.62, 0.61]}
    cp = params.CompareParams(baseline="baseline", parents={"y": "baseline"})
    table = compare.compare(scores, cp)
    rows = table["variants"]
    assert list(rows) == ["baseline", "x", "y"]
    assert "diff_vs_baseline" not in rows["baseline"]
    assert rows["x"]["vs_parent"] == "baseline" and rows["x"]["verdict_vs_baseline"] == "helps"
    assert rows["y"]["vs_parent"] == "baseline"
    assert rows["x"]["diff_vs_baseline"] == pytest.approx(0.1)


def _fake_results(root, scores):
    for name, values in scores.items():
        res = root / name
        (res / "live/plots/metrics/test").mkdir(parents=True)
        (res / "report.json").write_text(json.dumps({
            "seeds": list(range(len(values))),
            "per_seed": {str(i): {"micro_f1": v} for i, v in enumerate(values)}}))
        for metric, base in (("acc", 0.5), ("loss", 1.0)):
            (res / f"live/plots/metrics/test/{metric}.tsv").write_text(
                f"step\t{metric}\n0\t{base}\n1\t{base + 0.1}\n")


def test_stage_writes_table_charts_and_curves(tmp_path):
    names = ["baseline", "norm_inputs", "extra_variant"]
    scores = {"baseline": [0.5, 0.51, 0.52], "norm_inputs": [0.6, 0.61, 0.6], "extra_variant": [0.5, 0.52, 0.5]}
    _fake_results(tmp_path / "results", scores)
    raw = {"variants": {n: {} for n in names}}
    (tmp_path / "params.yaml").write_text(json.dumps(raw))  # JSON is YAML
    out = tmp_path / "compare"
    compare.main(["--params", str(tmp_path / "params.yaml"), "--results", str(tmp_path / "results"),
                  "--out", str(out)])
    table = json.loads((out / "comparison.json").read_text())
    assert list(table["variants"]) == names  # a new variant appears with no code change
    assert table["variants"]["norm_inputs"]["verdict_vs_baseline"] == "helps"
    assert (out / "micro_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"micro_f1": {n: pytest.approx(np.mean(v)) for n, v in scores.items()}}
    md = (out / "comparison.md").read_text()
    assert "| norm_inputs | 60.33 ± 0.58 |" in md and "helps" in md
    bars = (out / "micro_f1.csv").read_text().splitlines()
    assert bars[0] == "variant,micro_f1,micro_f1_std" and len(bars) == 4
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0] == "variant,epoch,test_acc,test_loss" and len(curves) == 1 + 2 * 3
    assert curves[1] == "baseline,1,0.5,1.0"


def test_missing_results_name_the_stage(tmp_path):
    (tmp_path / "params.yaml").write_text(json.dumps({"variants": {"baseline": {}}}))
    with pytest.raises(compare.UserError, match="evaluate@baseline"):
        compare.main(["--params", str(tmp_path / "params.yaml"), "--results", str(tmp_path / "r"),
                      "--out", str(tmp_path / "c")])
