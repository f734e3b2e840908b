"""Inference over seeds, against scipy.stats: CIs of means and of differences, Welch's test,
Holm's correction, power and the minimum detectable effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from cifar10_tricks import inference


def test_mean_ci_uses_student_t():
    mean, std, low, high = inference.mean_ci([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02)
    half = sps.t.ppf(0.975, 2) * 0.02 / np.sqrt(3)
    assert (low, high) == pytest.approx((0.72 - half, 0.72 + half))
    assert inference.mean_ci([0.5]) == (0.5, 0.0, None, None)


def test_welch_matches_scipy_and_hand_computed_ci():
    a, b = [0.80, 0.81, 0.82], [0.70, 0.71, 0.69]
    t = inference.welch(a, b)
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
    u = inference.welch([0.70, 0.75, 0.72, 0.68], [0.71, 0.711, 0.709])
    assert u.df < 5 and u.ci_low < u.diff < u.ci_high


def test_welch_edge_cases():
    assert (
        inference.welch(
            [0.5],
            [0.4],
        ).p
        is None
    )
    assert inference.welch([0.5, 0.5], [0.5, 0.5]).p == 1.0
    same = inference.welch([0.6, 0.6], [0.5, 0.5])
    assert same.p == 0.0 and same.ci_low == same.ci_high == pytest.approx(0.1)


def test_holm_matches_hand_computed_values():
    # sorted 0.01, 0.02, 0.03, 0.04 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06 (monotone), 0.06 (monotone)
    assert inference.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert inference.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert inference.holm([0.001]) == [0.001]


def test_minimum_detectable_effect_has_the_stated_power():
    se, df = 0.004, 18.0
    mde = inference.detectable(se, df, 0.05)
    assert inference.power(mde, se, df, 0.05) == pytest.approx(0.80, abs=1e-6)
    crit = sps.t.ppf(0.975, df)  # the same power from scipy.stats' noncentral t
    assert inference.power(mde, se, df, 0.05) == pytest.approx(
        sps.nct.sf(crit, df, mde / se) + sps.nct.cdf(-crit, df, mde / se), abs=1e-9
    )
    # Close to the normal-approximation rule (z_0.975 + z_0.8) se, a little larger for the t.
    assert 2.8 * se < mde < 3.1 * se
    assert inference.detectable(se, df, 0.005) > mde  # a stricter level needs a larger effect
    # Seeds for a half-point effect at sd 0.5 points: the smallest n whose MDE is <= 0.005.
    n = inference.seeds_needed(0.005, 0.005, 0.05)
    assert inference.detectable(0.005 * math.sqrt(2 / n), 2 * n - 2, 0.05) <= 0.005
    assert inference.detectable(0.005 * math.sqrt(2 / (n - 1)), 2 * n - 4, 0.05) > 0.005
    assert 16 <= n <= 19


def test_mean_sd_is_mean_and_sample_sd():
    assert inference.mean_sd([0.5, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    assert inference.mean_sd([0.4]) == (0.4, 0.0)
    assert inference.mean_ci([0.0, 0.0, 0.3])[2] < 0  # a t-interval, as it is: compare cuts it


def test_paired_matches_scipys_ttest_rel_and_its_interval():
    a = [0.712, 0.705, 0.731, 0.698, 0.720, 0.709]
    b = [0.702, 0.699, 0.718, 0.690, 0.716, 0.701]
    t = inference.paired(a, b)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert t.method == "paired" and t.df == 5
    assert t.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (t.ci_low, t.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert t.diff == pytest.approx(np.mean(np.subtract(a, b)))
    # The same numbers as independent samples: Welch's interval is several times wider here.
    w = inference.welch(a, b)
    assert (w.ci_high - w.ci_low) > 3 * (t.ci_high - t.ci_low)


def test_paired_edge_cases():
    assert inference.paired([0.5], [0.4]).p is None
    same = inference.paired([0.6, 0.7], [0.5, 0.6])  # every seed moved by exactly 0.1
    assert same.p == 0.0 and same.ci_low == same.ci_high == pytest.approx(0.1)
    assert inference.paired([0.5, 0.6], [0.5, 0.6]).p == 1.0


def test_correlation_is_pearsons_r():
    a, b = [0.1, 0.4, 0.3, 0.8], [0.2, 0.5, 0.2, 0.9]
    assert inference.correlation(a, b) == pytest.approx(sps.pearsonr(a, b).statistic)
    assert inference.correlation([0.1, 0.2], [0.3, 0.4]) is None  # too few seeds to say
    assert inference.correlation([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None


def test_paired_power_and_seeds_needed_use_n_minus_1_degrees_of_freedom():
    sd_d, n = 0.004, 10
    se, df = sd_d / math.sqrt(n), n - 1
    mde = inference.detectable(se, df, 0.05)
    crit = sps.t.ppf(0.975, df)
    assert sps.nct.sf(crit, df, mde / se) + sps.nct.cdf(-crit, df, mde / se) == pytest.approx(
        0.80, abs=1e-6
    )
    n = inference.seeds_needed(sd_d, 0.005, 0.05, paired=True)
    assert inference.detectable(sd_d / math.sqrt(n), n - 1, 0.05) <= 0.005
    assert inference.detectable(sd_d / math.sqrt(n - 1), n - 2, 0.05) > 0.005
    # Pairs whose differences spread like one variant's scores need about half the seeds.
    assert n < inference.seeds_needed(sd_d, 0.005, 0.05)


def test_holm_levels_give_intervals_that_agree_with_holms_verdicts():
    """An interval drawn at its Holm level excludes zero exactly where Holm rejects: the
    rejected ones at alpha / (m - k), the rest at the level where Holm stopped."""
    from cifar10_tricks.inference import holm_levels, interval

    rng = np.random.default_rng(3)
    for _ in range(200):
        m = int(rng.integers(1, 9))
        tests = [
            inference.paired(list(rng.normal(rng.normal(0, 0.02), 0.02, 5)), [0.0] * 5)
            for _ in range(m)
        ]
        ps = [t.p for t in tests]
        adjusted = inference.holm(ps)
        for t, p_adj, level in zip(tests, adjusted, holm_levels(ps, 0.05)):
            low, high = interval(t, level)
            assert (p_adj < 0.05) == (low > 0 or high < 0), (ps, level, low, high)
    # The rejected ones in order: 0.001 at 0.05/3, 0.01 at 0.05/2; 0.5 at the stopping level.
    assert holm_levels([0.5, 0.001, 0.01], 0.05) == [0.05, 0.05 / 3, 0.05 / 2]
    assert holm_levels([0.04, 0.03], 0.05) == [0.05 / 2, 0.05 / 2]  # stops at once
