"""The comparison's types: points, the t-test named in words, and comparison.json's flat keys."""

from __future__ import annotations

import pytest

from cifar10_tricks.comparison import Comparison, Row, Table, points
from cifar10_tricks.inference import TTest


def test_points_are_hundredths_and_none_stays_none():
    assert points(0.0123) == pytest.approx(1.23) and points(None) is None


def _table(method: str, fallback: str | None = None) -> Table:
    t = TTest(0.01, 0.002, 0.018, 0.02, 0.004, 9.0, "welch" if fallback else method)
    c = Comparison("baseline", t, 0.04, 0.011, "helps", 0.9, fallback)
    rows = {
        "baseline": Row(0.7, 0.01, 0.69, 0.71, 10, {}, {0: 0.7}),
        "x": Row(0.71, 0.01, 0.70, 0.72, 10, {"baseline": c, "parent": c}, {0: 0.71}),
    }
    return Table(rows, 0.05, "baseline", "holm", 1, 0.05, 0.01, 40, method)


def test_the_method_is_named_in_words_and_per_comparison():
    paired, welch = _table("paired"), _table("welch")
    assert paired.method_text.startswith("paired t-test") and paired.method_short == "paired t"
    assert welch.method_text.startswith("Welch's t-test") and welch.method_short == "Welch"
    fell = _table("paired", "the seeds differ").variants["x"].vs["baseline"]
    assert fell.method == "welch (the seeds differ)"


def test_to_json_keeps_flat_keys_in_their_order():
    out = _table("paired").to_json()
    assert out["test"] == "paired t-test on per-seed differences (two-sided)"
    assert out["method"] == "paired"
    assert out["typical_sd_of"] == "per-seed differences"
    x = out["variants"]["x"]
    assert x["vs_baseline"] == "baseline" and x["diff_vs_parent"] == 0.01
    assert x["p_adj_vs_baseline"] == 0.04 and x["test_vs_baseline"] == "paired"
    assert "vs_parent" not in out["variants"]["baseline"]
    assert list(x).index("vs_baseline") < list(x).index("vs_parent")
