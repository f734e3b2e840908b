"""comparison.md in words: intervals cut at the scale's end, effects beyond it, the lead."""

from __future__ import annotations

from cifar10_tricks import params, writeup
from stages import compare


def test_an_interval_past_the_scale_is_cut_and_says_so():
    table = compare.compare({"baseline": {0: 0.0, 1: 0.0, 2: 0.3}}, params.CompareParams())
    row = table.variants["baseline"]
    assert (
        row.ci_low == 0.0
        and row.clipped
        and table.to_json()["variants"]["baseline"]["ci95_clipped"]
    )
    assert "(cut at the scale's end)" in writeup.markdown(table)
    one = compare.compare({"baseline": {0: 0.5}}, params.CompareParams())
    assert "— (one seed)" in writeup.markdown(one) and "n/a" not in writeup.markdown(one)


def test_an_effect_beyond_the_scale_is_said_in_words():
    wild = {"baseline": {0: 0.1, 1: 0.9}, "x": {0: 0.9, 1: 0.1}}
    table = compare.compare(wild, params.CompareParams(method="welch"))
    assert table.variants["x"].vs["baseline"].mde is None
    md = writeup.markdown(table)
    assert "even an effect of more than 200 points could go unseen" in md and "MDE over 200" in md
