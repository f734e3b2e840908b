"""The comparison: CIs of means and of differences, Welch's test, Holm's correction, power,
verdicts, ladder parents, and the files it writes."""

from __future__ import annotations

import json
import math

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


def test_welch_matches_scipy_and_hand_computed_ci():
    a, b = [0.80, 0.81, 0.82], [0.70, 0.71, 0.69]
    t = compare.welch(a, b)
    assert t.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert t.diff == pytest.approx(0.11)
    # By hand: se^2 = va/na + vb/nb, Welch-Satterthwaite df, diff +- t(0.975, df) se.
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = sps.t.ppf(0.975, df) * se
    assert (t.se, t.df) == pytest.approx((se, df))
    assert (t.ci_low, t.ci_high) == pytest.approx((0.11 - half, 0.11 + half))
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (t.ci_low, t.ci_high) == pytest.approx((ci.low, ci.high))
    # Unequal spreads: df falls below na + nb - 2, so the CI is wider than the pooled one.
    u = compare.welch([0.70, 0.75, 0.72, 0.68], [0.71, 0.711, 0.709])
    assert u.df < 5 and u.ci_low < u.diff < u.ci_high


def test_welch_edge_cases():
    assert compare.welch([0.5], [0.4], ).p is None
    assert compare.welch([0.5, 0.5], [0.5, 0.5]).p == 1.0
    same = compare.welch([0.6, 0.6], [0.5, 0.5])
    assert same.p == 0.0 and same.ci_low == same.ci_high == pytest.approx(0.1)


def test_holm_matches_hand_computed_values():
    # sorted 0.01, 0.02, 0.03, 0.04 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06 (monotone), 0.06 (monotone)
    assert compare.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert compare.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert compare.holm([0.001]) == [0.001]


def test_minimum_detectable_effect_has_the_stated_power():
    se, df = 0.004, 18.0
    mde = compare.detectable(se, df, 0.05)
    assert compare.power(mde, se, df, 0.05) == pytest.approx(0.80, abs=1e-6)
    crit = sps.t.ppf(0.975, df)  # the same power from scipy.stats' noncentral t
    assert compare.power(mde, se, df, 0.05) == pytest.approx(
        sps.nct.sf(crit, df, mde / se) + sps.nct.cdf(-crit, df, mde / se), abs=1e-9)
    # Close to the normal-approximation rule (z_0.975 + z_0.8) se, a little larger for the t.
    assert 2.8 * se < mde < 3.1 * se
    assert compare.detectable(se, df, 0.005) > mde  # a stricter level needs a larger effect
    # Seeds for a half-point effect at sd 0.5 points: the smallest n whose MDE is <= 0.005.
    n = compare.seeds_needed(0.005, 0.005, 0.05)
    assert compare.detectable(0.005 * math.sqrt(2 / n), 2 * n - 2, 0.05) <= 0.005
    assert compare.detectable(0.005 * math.sqrt(2 / (n - 1)), 2 * n - 4, 0.05) > 0.005
    assert 16 <= n <= 19


def _planted(shift: float, n: int = 10, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    base = 0.70 + rng.normal(0, 0.005, n)
    return {"baseline": list(base), "treated": list(0.70 + shift + rng.normal(0, 0.005, n))}


def test_a_planted_effect_is_called_and_a_null_one_is_not():
    cp = params.CompareParams()
    hit = compare.compare(_planted(0.01), cp)["variants"]["treated"]
    assert hit["verdict_vs_baseline"] == "helps"
    assert hit["ci95_low_vs_baseline"] < 0.01 < hit["ci95_high_vs_baseline"]
    assert compare.compare(_planted(-0.01), cp)["variants"]["treated"]["verdict_vs_baseline"] == "hurts"
    calls = [compare.compare(_planted(0.0, seed=s), cp)["variants"]["treated"]["verdict_vs_baseline"]
             for s in range(20)]
    assert calls.count("no detectable effect") >= 18  # a 5% test: about 1 false call in 20
    null = compare.compare(_planted(0.0), cp)["variants"]["treated"]
    assert 0.004 < null["mde_vs_baseline"] < 0.01  # sd 0.5 points, 10 seeds: ~0.7 points


def test_holm_changes_verdicts_that_ride_on_one_lucky_p():
    """Seven comparisons, one at p ~ 0.02: unadjusted it 'helps', Holm-adjusted it does not."""
    base = np.array([0.700, 0.705, 0.695, 0.702, 0.698])
    scores = {"baseline": list(base)}
    for k in range(6):  # six variants that do nothing
        scores[f"v{k}"] = list(base + 0.0005 * (k - 3))
    scores["lucky"] = list(base + 0.007)  # t ~ 2.9 on 8 df
    parents = {name: "baseline" for name in scores if name != "baseline"}
    none = compare.compare(scores, params.CompareParams(correction="none", parents=parents))
    holm = compare.compare(scores, params.CompareParams(correction="holm", parents=parents))
    p = none["variants"]["lucky"]["p_vs_baseline"]
    assert 0.05 / 7 < p < 0.05, p
    assert none["variants"]["lucky"]["verdict_vs_baseline"] == "helps"
    assert holm["variants"]["lucky"]["verdict_vs_baseline"] == "no detectable effect"
    assert holm["comparisons"] == 7  # the parent is the baseline: each pair counted once
    assert holm["typical_sd"] == pytest.approx(np.std(base, ddof=1))  # every variant spreads alike
    raw = [none["variants"][n]["p_vs_baseline"] for n in scores if n != "baseline"]
    assert [holm["variants"][n]["p_adj_vs_baseline"] for n in scores if n != "baseline"] == \
        pytest.approx(compare.holm(raw))


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
    raw = {"variants": {n: {} for n in names}, "compare": {"correction": "none"}}
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
    assert md.startswith("## Does each trick help?")
    assert "- **Helps:** norm_inputs (+9.33 [" in md and "| norm_inputs | 60.33 ± 0.58 |" in md
    assert "extra_variant (" in md.split("**Hurts:**")[1]
    assert (out / "effects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    effects = (out / "effects.csv").read_text().splitlines()
    assert effects[0] == "variant,rung,comparison,reference,effect,ci_low,ci_high,p_adjusted,verdict"
    # every variant but the baseline, vs parent and vs baseline (norm_inputs' parent is the baseline)
    assert [line.split(",")[:3] for line in effects[1:]] == [
        ["norm_inputs", "1", "vs parent"], ["norm_inputs", "1", "vs baseline"],
        ["extra_variant", "2", "vs parent"], ["extra_variant", "2", "vs baseline"]]
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0] == "variant,epoch,test_acc,test_loss" and len(curves) == 1 + 2 * 3
    assert curves[1] == "baseline,1,0.5,1.0"


def test_missing_results_name_the_stage(tmp_path):
    (tmp_path / "params.yaml").write_text(json.dumps({"variants": {"baseline": {}}}))
    with pytest.raises(compare.UserError, match="evaluate@baseline"):
        compare.main(["--params", str(tmp_path / "params.yaml"), "--results", str(tmp_path / "r"),
                      "--out", str(tmp_path / "c")])
