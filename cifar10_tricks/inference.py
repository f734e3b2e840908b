"""Inference over seeds: means with CIs, the paired and Welch t-tests, Holm's correction, power.

Pure functions of lists of per-seed scores; NumPy and ``scipy.special`` only (its t and
noncentral-t distributions import in a fraction of ``scipy.stats``' time, `bench_startup`).
``tests/test_inference.py`` checks each against ``scipy.stats``.

- Student's paired t-test on per-seed differences (Student 1908; any text, e.g. Casella &
  Berger, Statistical Inference, 9.2): :func:`paired` gives ``scipy.stats.ttest_rel(a, b)``'s
  p-value and ``confidence_interval()``.
- Welch, B. L. (1947). The generalization of "Student's" problem when several different
  population variances are involved. Biometrika 34, 28-35.  Satterthwaite, F. E. (1946). An
  approximate distribution of estimates of variance components. Biometrics Bulletin 2,
  110-114.  :func:`welch` gives ``scipy.stats.ttest_ind(a, b, equal_var=False)``'s p-value
  and confidence interval.
- Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian
  Journal of Statistics 6, 65-70.  :func:`holm` is the adjustment statsmodels'
  ``multipletests(p, method="holm")`` makes (tested on hand-computed values).
- Power of the two-sided t-test from the noncentral t distribution (``scipy.stats.nct``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

POWER = 0.80  # the power at which the minimum detectable effect is stated


@dataclass(frozen=True)
class TTest:
    """One comparison of a variant with a reference, over seeds (micro-F1 in [0, 1] units)."""

    diff: float  # mean of the variant minus mean of the reference
    ci_low: float | None  # 95% CI of the difference; None: too few seeds
    ci_high: float | None
    p: float | None  # two-sided p-value; None: too few seeds
    se: float | None  # standard error of the difference
    df: float | None  # degrees of freedom of its t distribution
    method: str = "welch"  # welch | paired
    sd_diff: float | None = None  # paired: the sample sd of the per-seed differences


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float | None, float | None]:
    """(mean, sample sd, CI low, CI high) with Student's t; no CI from a single seed.  With few
    seeds the interval can reach past micro-F1's [0, 1]: the caller decides what to show."""
    mean, sd = mean_sd(values)
    n = len(values)
    if n < 2:
        return mean, sd, None, None
    half = float(special.stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def _t_test(diff: float, se: float, df: float, method: str, sd_diff: float | None = None) -> TTest:
    """The two-sided t-test of ``diff`` with standard error ``se`` on ``df`` degrees of freedom:
    p = 2 P(T_df > |diff| / se), CI diff +- t(0.975, df) se.  With se = 0 (every seed scored,
    or moved, the same) the test is undefined: equal means are no effect, unequal ones are."""
    if se == 0:
        return TTest(diff, diff, diff, 1.0 if diff == 0 else 0.0, 0.0, df, method, sd_diff)
    p = float(2 * special.stdtr(df, -abs(diff) / se))
    half = float(special.stdtrit(df, 0.975)) * se
    return TTest(diff, diff - half, diff + half, p, se, df, method, sd_diff)


def welch(a: list[float], b: list[float]) -> TTest:
    """Welch's t-test of mean(a) vs mean(b) over seeds, with the 95% CI of the difference.

    Unequal variances allowed: se^2 = va/na + vb/nb, Welch-Satterthwaite degrees of freedom.
    """
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return TTest(diff, None, None, None, None, None)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # no spread to weigh the degrees of freedom by: the pooled count
        return _t_test(diff, 0.0, float(len(a) + len(b) - 2), "welch")
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    return _t_test(diff, se, df, "welch")


def paired(a: list[float], b: list[float]) -> TTest:
    """Student's t-test of the mean per-seed difference a[i] - b[i] (the same seed of two
    variants), with its 95% CI: d = a - b, se = sd(d) / sqrt(n), n - 1 degrees of freedom.

    Where the two variants' scores move together seed by seed (the same data order and, for
    the same init scheme, the same initial weights), sd(d) is far below what Welch's
    sqrt(va/na + vb/nb) assumes, and the interval narrows accordingly.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff, n = float(d.mean()), len(d)
    if n < 2:
        return TTest(diff, None, None, None, None, None, "paired")
    sd = float(d.std(ddof=1))
    return _t_test(diff, sd / math.sqrt(n), float(n - 1), "paired", sd)


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson's r between two variants' per-seed scores; None with fewer than 3 seeds or a
    variant that scored the same on every seed."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p-values times (m - k + 1),
    kept monotone and capped at 1.  It controls the family-wise error rate at alpha."""
    m = len(pvalues)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def holm_levels(pvalues: list[float], alpha: float) -> list[float]:
    """The level at which to draw each comparison's interval so that it excludes zero exactly
    where Holm's procedure at ``alpha`` rejects (a verdict and its interval never disagree).

    Holm tests the k-th smallest p-value (k from 0) at alpha / (m - k) and stops at the first
    it cannot reject: a rejected one gets that level; every other one the level of the step
    where Holm stopped, alpha / (m - r) with r rejections, which its p-value does not pass.
    The intervals are not simultaneous: each is the one Holm's own test implies.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    rejected = 0
    for k, i in enumerate(order):
        if pvalues[i] >= alpha / (m - k):
            break
        rejected += 1
    levels = [alpha / (m - rejected)] * m if rejected < m else [0.0] * m
    for k, i in enumerate(order[:rejected]):
        levels[i] = alpha / (m - k)
    return levels


def interval(t: TTest, level: float) -> tuple[float, float] | None:
    """The (1 - ``level``) confidence interval of ``t``'s difference; None without one."""
    if t.se is None or t.df is None:
        return None
    half = float(special.stdtrit(t.df, 1 - level / 2)) * t.se if t.se > 0 else 0.0
    return t.diff - half, t.diff + half


def power(effect: float, se: float, df: float, level: float) -> float:
    """Power of a two-sided t-test at ``level`` to detect a true difference ``effect``
    (noncentral t with noncentrality effect / se)."""
    crit = special.stdtrit(df, 1 - level / 2)
    ncp = effect / se
    value = float(1 - special.nctdtr(df, ncp, crit) + special.nctdtr(df, ncp, -crit))
    if not math.isfinite(value):  # scipy's noncentral t gives up far in its tails
        return 1.0 if ncp > crit else 0.0
    return value


def detectable(
    se: float | None, df: float | None, level: float, target: float = POWER
) -> float | None:
    """The smallest true difference the test detects with probability ``target`` (noncentral
    t), or None: too few seeds to test, or more than the whole [0, 1] scale.  With no spread at
    all (se 0: the seeds scored, or moved, exactly alike) any difference shows: 0."""
    if se is None or not df:
        return None
    if se == 0:
        return 0.0
    high = se * max(1.0, float(special.stdtrit(df, 1 - level / 2)))
    while power(high, se, df, level) < target:
        high *= 2
        if high > 2.0:  # no difference of micro-F1 is that large
            return None
    low = 0.0
    while high - low > 1e-9:  # power rises with the effect: bisect to 1e-7 points
        mid = (low + high) / 2
        low, high = (mid, high) if power(mid, se, df, level) < target else (low, mid)
    return high


def seeds_needed(
    sd: float,
    effect: float,
    level: float,
    target: float = POWER,
    cap: int = 1000,
    paired: bool = False,
) -> int | None:
    """Seeds per variant for ``effect`` to be detected with probability ``target``; None when
    more than ``cap``.  Welch: both variants spread like ``sd``; paired: ``sd`` is the spread
    of the per-seed differences."""

    def enough(n: int) -> bool:
        se, df = (sd / math.sqrt(n), n - 1.0) if paired else (sd * math.sqrt(2 / n), 2 * n - 2.0)
        mde = detectable(se, df, level, target)
        return mde is not None and mde <= effect

    if sd == 0:
        return 2
    if not enough(cap):
        return None
    low, high = 1, cap  # the detectable effect shrinks as seeds grow: binary search
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high
