"""The charts: plot rows in ladder order (vs parent before vs baseline, points), and PNGs."""

from __future__ import annotations

from cifar10_tricks import charts, params
from stages import compare


def _table():
    scores = {
        "baseline": {0: 0.50, 1: 0.52, 2: 0.51},
        "x": {0: 0.60, 1: 0.61, 2: 0.62},
        "y": {0: 0.61, 1: 0.60, 2: 0.63},
    }
    return compare.compare(scores, params.CompareParams(), chance=0.1)


def test_effect_rows_put_vs_parent_first_in_points():
    rows = charts.effect_rows(_table())
    assert [(r["variant"], r["comparison"]) for r in rows] == [
        ("x", "vs parent"),
        ("x", "vs baseline"),
        ("y", "vs parent"),
        ("y", "vs baseline"),
    ]  # the baseline has no row: it is compared with nothing
    assert rows[0]["reference"] == rows[1]["reference"] == "baseline"  # x's parent is the baseline
    assert rows[0]["effect"] == round(100 * (0.61 - 0.51), 4)
    assert rows[2]["reference"] == "x" and set(rows[0]) == set(charts.EFFECT_FIELDS)


def test_seed_rows_hold_every_seed_with_its_variants_mean():
    rows = charts.seed_rows(_table())
    assert len(rows) == 9 and set(rows[0]) == set(charts.SEED_FIELDS)
    assert rows[3] == {**rows[3], "variant": "x", "rung": 1, "seed": 0, "micro_f1": 60.0}
    assert rows[3]["mean"] == 61.0


def test_both_plots_are_written_as_pngs(tmp_path):
    table = _table()
    charts.forest_plot(table, charts.effect_rows(table), tmp_path / "effects.png")
    charts.dot_plot(table, tmp_path / "micro_f1.png")
    for name in ("effects.png", "micro_f1.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_effect_label_names_the_parent_and_writes_minus_as_vega_does():
    """The PNG's label, which the page's template writes the same way (its test compares the
    two): the CI where there is one, the parent rung named, minus as U+2212."""
    rows = charts.effect_rows(_table())
    x_parent, x_baseline = rows[0], rows[1]
    assert charts.effect_label(x_parent).startswith("+10.00 [")
    assert charts.effect_label(x_parent).endswith("] vs parent (baseline)")
    assert charts.effect_label(x_baseline).endswith("] vs baseline")
    one_seed = {**rows[2], "effect": -0.5, "ci_low": "", "ci_high": ""}
    assert charts.effect_label(one_seed) == "\u22120.50 vs parent (x)"
