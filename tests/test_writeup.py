"""comparison.md in words: intervals cut at the scale's end, effects beyond it, the lead."""

from __future__ import annotations

import dataclasses

import numpy as np

from cifar10_tricks import params, writeup
from stages import compare
from tests.conftest import MADE_BY


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


def _made(**edits):
    return {**MADE_BY, **edits}


def test_the_header_names_the_data_and_run_and_warns_in_words():
    scores = {"baseline": {0: 0.101, 1: 0.097, 2: 0.099}, "x": {0: 0.5, 1: 0.52, 2: 0.51}}
    table = compare.compare(scores, params.CompareParams(), chance=0.1)
    real = _made(data={**MADE_BY["data"], "source": "cifar10: https://x/c.tar.gz (md5 c58f)"})
    lines = writeup.header(dataclasses.replace(table, made_by=real, differs=("precision",)))
    assert lines[0].startswith("Data: cifar10: https://x/c.tar.gz") and "fp32" in lines[0]
    assert "1 epoch(s), batch 64, seeds 3, 5; cpu (a test CPU), fp32" in lines[0]
    assert not any("Generated images" in line for line in lines)
    near = next(line for line in lines if "within 5 points of chance" in line)
    assert "(9.90 vs 10.00)" in near
    assert any("they differ in precision" in line for line in lines)
    fine = compare.compare({"baseline": {0: 0.6, 1: 0.61}}, params.CompareParams(), chance=0.1)
    calm = writeup.header(dataclasses.replace(fine, made_by=_made(precision="bf16")))
    assert len(calm) == 4 and "the per-epoch curves in bf16, the scores in fp32" in calm[0]
    assert calm[2] == "**Generated images: this says nothing about CIFAR-10.**"
    assert writeup.header(fine) == []  # a table built without a record says nothing


def test_the_power_analysis_prints_the_command_that_adds_only_the_missing_seeds():
    """A half-point effect needs more seeds than the study has: comparison.md gives the
    `dvc exp run` that appends one block of the next seeds, and counts the models it trains."""
    noisy = {
        "baseline": {s: 0.5 + 0.01 * (s % 3) for s in range(10)},
        "x": {s: 0.5 + 0.01 * ((s * 7) % 5) for s in range(10)},
    }
    table = compare.compare(noisy, params.CompareParams())
    need = table.seeds_for_half_point
    assert 10 < need <= params.MAX_SEEDS
    tp = params.TrainParams(seeds=("0-4", "5-9"))
    grown = compare.grow(tp, 2, table)
    assert grown.seeds == ("0-4", "5-9", f"10-{need - 1}") and grown.added == need - 10
    assert grown.models == 2 * (need - 10) and grown.trained == 20
    md = writeup.markdown(dataclasses.replace(table, grow=grown))
    assert f"`dvc exp run -S 'train.seeds=[0-4,5-9,10-{need - 1}]'` adds them" in md
    assert f"{need - 10} new seed(s) per variant, {2 * (need - 10)} models to train" in md
    # A study with the seeds it needs gets none.
    assert compare.grow(params.TrainParams(seeds=(f"0-{need}",)), 2, table) is None


def test_too_noisy_for_a_half_point_effect_the_lead_still_gives_a_command():
    """Needing more than params.yaml allows, the lead says so and gives the block that doubles
    the study (and how much narrower that makes every interval); near the highest seed allowed,
    no command that validation would refuse."""
    table = compare.compare(
        {"baseline": {0: 0.5, 1: 0.6}, "x": {0: 0.52, 1: 0.5}}, params.CompareParams()
    )
    many = dataclasses.replace(table, seeds_for_half_point=None)
    tp = params.TrainParams(seeds=("0-1", "2-3"))
    grown = compare.grow(tp, 2, many)
    assert grown.seeds == ("0-1", "2-3", "4-7") and not grown.enough
    md = writeup.markdown(dataclasses.replace(many, grow=grown))
    assert "more than 1,000 seeds per variant" in md and "more than params.yaml allows" in md
    assert "`dvc exp run -S 'train.seeds=[0-1,2-3,4-7]'` narrows every interval by about 1.4x" in md
    top = params.TrainParams(seeds=(f"{params.MAX_SEED - 1}-{params.MAX_SEED}",))
    assert compare.grow(top, 2, many) is None


def test_a_variant_identical_to_its_parent_is_said_to_be_so_not_given_a_huge_mde():
    """Spread exactly 0 (a copy of the baseline, paired): 'identical on every seed', where it
    used to say an effect of more than 200 points could go unseen."""
    same = {"baseline": {0: 0.5, 1: 0.6, 2: 0.55}, "copy": {0: 0.5, 1: 0.6, 2: 0.55}}
    table = compare.compare(same, params.CompareParams(method="paired"))
    c = table.variants["copy"].vs["baseline"]
    assert c.mde == 0.0 and c.verdict == "no detectable effect"
    md = writeup.markdown(table)
    assert "copy (+0.00 [+0.00, +0.00] vs baseline; identical on every seed)" in md
    assert "no detectable effect, identical on every seed" in md
    assert "200 points" not in md and "MDE over 200" not in md


def test_a_rung_compared_with_the_one_before_it_says_so():
    """A variant added at the end, with no compare.parents entry, is compared with the rung
    listed before it: comparison.md says which, and how to choose another."""
    scores = {
        name: {s: 0.5 + 0.01 * i + 0.001 * s for s in range(3)}
        for i, name in enumerate(["baseline", "a", "b", "new"])
    }
    table = compare.compare(scores, params.CompareParams(parents={"b": "baseline"}))
    assert table.implicit == ("a", "new")
    md = writeup.markdown(table)
    assert (
        "Rungs with no `compare.parents` entry are compared with the rung listed before them: "
        "a vs baseline, new vs b. Set compare.parents to choose." in md
    )


def test_no_interval_beside_could_not_be_told_apart_excludes_zero():
    """The newcomer's case: a rung whose unadjusted 95% CI excludes zero but whose Holm-adjusted
    verdict does not reject.  The lead prints the interval Holm tested it at, which spans zero,
    and says which interval it is; the table keeps the 95% CI and labels the adjusted one."""
    import re

    rng = np.random.default_rng(0)
    base = {s: 0.5 + 0.02 * rng.standard_normal() for s in range(4)}
    scores = {"baseline": base}
    for i, shift in enumerate((0.012, 0.0, 0.001, -0.002, 0.0, 0.001)):
        scores[f"v{i}"] = {s: base[s] + shift + 0.006 * rng.standard_normal() for s in range(4)}
    table = compare.compare(scores, params.CompareParams())
    c = table.variants["v0"].vs["parent"]
    assert c.result.ci_low > 0 and c.verdict == "no detectable effect"  # the case
    assert c.adjusted[0] < 0 < c.adjusted[1]
    md = writeup.markdown(table)
    assert "Holm-adjusted interval" in md
    undecided = next(line for line in md.splitlines() if "Could not be told apart" in line)
    for low, high in re.findall(r"\[([+-]\d+\.\d+), ([+-]\d+\.\d+)\]", undecided):
        assert float(low) <= 0 <= float(high), undecided
    assert f"adj. {c.p_adjusted:.3g} [" in md
