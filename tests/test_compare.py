"""The comparison: verdicts from planted effects, Holm over the family, ladder parents, the typed
table and its JSON, and the files the stage writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from cifar10_tricks import charts, inference, params, writeup
from cifar10_tricks.errors import UserError
from stages import compare
from tests.conftest import fake_results, project_params


def by_seed(scores: dict[str, list[float]]) -> dict[str, dict[int, float]]:
    """Each variant's scores as seed -> score, seeds 0, 1, ..."""
    return {name: dict(enumerate(map(float, values))) for name, values in scores.items()}


def _planted(shift: float, n: int = 10, seed: int = 0, r: float = 0.0) -> dict:
    """Two variants' seed scores, sd 0.5 points each, correlated r seed by seed."""
    rng = np.random.default_rng(seed)
    common, own = rng.normal(0, 0.005, n), rng.normal(0, 0.005, (2, n))
    base = 0.70 + np.sqrt(r) * common + np.sqrt(1 - r) * own[0]
    treated = 0.70 + shift + np.sqrt(r) * common + np.sqrt(1 - r) * own[1]
    return by_seed({"baseline": base, "treated": treated})


def test_a_planted_effect_is_called_and_a_null_one_is_not():
    cp = params.CompareParams()
    hit = compare.compare(_planted(0.01), cp).variants["treated"].vs["baseline"]
    assert hit.verdict == "helps"
    assert hit.result.ci_low < 0.01 < hit.result.ci_high
    assert (
        compare.compare(_planted(-0.01), cp).variants["treated"].vs["baseline"].verdict == "hurts"
    )
    calls = [
        compare.compare(_planted(0.0, seed=s), cp).variants["treated"].vs["baseline"].verdict
        for s in range(20)
    ]
    assert calls.count("no detectable effect") >= 18  # a 5% test: about 1 false call in 20
    null = compare.compare(_planted(0.0), cp).variants["treated"].vs["baseline"]
    assert 0.004 < null.mde < 0.01  # sd 0.5 points, 10 seeds: ~0.7 points


def test_holm_changes_verdicts_that_ride_on_one_lucky_p():
    """Seven comparisons, one at p ~ 0.02: unadjusted it 'helps', Holm-adjusted it does not."""
    base = np.array([0.700, 0.705, 0.695, 0.702, 0.698])
    scores = {"baseline": list(base)}
    for k in range(6):  # six variants that do nothing
        scores[f"v{k}"] = list(base + 0.0005 * (k - 3))
    scores["lucky"] = list(base + 0.007)  # t ~ 2.9 on 8 df
    parents = {name: "baseline" for name in scores if name != "baseline"}
    scores = by_seed(scores)
    # Welch: the variants' constant shifts would make every per-seed difference exact.
    none = compare.compare(
        scores, params.CompareParams(correction="none", parents=parents, method="welch")
    )
    holm = compare.compare(
        scores, params.CompareParams(correction="holm", parents=parents, method="welch")
    )
    p = none.variants["lucky"].vs["baseline"].result.p
    assert 0.05 / 7 < p < 0.05, p
    assert none.variants["lucky"].vs["baseline"].verdict == "helps"
    assert holm.variants["lucky"].vs["baseline"].verdict == "no detectable effect"
    assert holm.comparisons == 7  # the parent is the baseline: each pair counted once
    assert holm.typical_sd == pytest.approx(np.std(base, ddof=1))  # every variant spreads alike
    raw = [none.variants[n].vs["baseline"].result.p for n in scores if n != "baseline"]
    assert [
        holm.variants[n].vs["baseline"].p_adjusted for n in scores if n != "baseline"
    ] == pytest.approx(inference.holm(raw))


def test_parents_default_to_previous_rung():
    names = ["baseline", "a", "b", "c"]
    assert params.parent_of(names, "baseline", {}) is None
    assert params.parent_of(names, "b", {}) == "a"
    assert params.parent_of(names, "c", {"c": "a"}) == "a"


def test_table_in_ladder_order_with_baseline_and_parent():
    scores = {"baseline": [0.5, 0.52, 0.51], "x": [0.6, 0.61, 0.62], "y": [0.6, 0.62, 0.61]}
    cp = params.CompareParams(baseline="baseline", parents={"y": "baseline"})
    table = compare.compare(by_seed(scores), cp)
    rows = table.variants
    assert list(rows) == ["baseline", "x", "y"]
    assert rows["baseline"].vs == {}
    assert (
        rows["x"].vs["parent"].reference == "baseline"
        and rows["x"].vs["baseline"].verdict == "helps"
    )
    assert rows["y"].vs["parent"].reference == "baseline"
    assert rows["x"].vs["baseline"].result.diff == pytest.approx(0.1)
    # The JSON keeps the flat <field>_vs_<label> keys, baseline before parent.
    x = table.to_json()["variants"]["x"]
    assert x["vs_parent"] == "baseline" and x["diff_vs_baseline"] == pytest.approx(0.1)
    assert list(x)[:7] == [
        "micro_f1",
        "micro_f1_sd",
        "ci95_low",
        "ci95_high",
        "ci95_clipped",
        "seeds",
        "vs_baseline",
    ]
    assert "diff_vs_baseline" not in table.to_json()["variants"]["baseline"]


def test_stage_writes_table_charts_and_curves(tmp_path):
    names = ["baseline", "norm_inputs", "extra_variant"]
    scores = {
        "baseline": [0.5, 0.51, 0.52],
        "norm_inputs": [0.6, 0.61, 0.6],
        "extra_variant": [0.5, 0.52, 0.5],
    }
    blocks = fake_results(tmp_path / "results", scores)
    project_params(tmp_path / "params.yaml", names, blocks, correction="none")
    out = tmp_path / "compare"
    compare.main(
        [
            "--params",
            str(tmp_path / "params.yaml"),
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(out),
        ]
    )
    table = json.loads((out / "comparison.json").read_text())
    assert list(table["variants"]) == names  # a new variant appears with no code change
    assert table["variants"]["norm_inputs"]["verdict_vs_baseline"] == "helps"
    assert (out / "micro_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"micro_f1": {n: pytest.approx(np.mean(v)) for n, v in scores.items()}}
    md = (out / "comparison.md").read_text()
    first = md.splitlines()
    assert (
        first[0].startswith("Data: synthetic: generated images")
        and "500 train / 60 test" in first[0]
    )
    assert first[2] == "**Generated images: this says nothing about CIFAR-10.**"
    assert first[4] == "## Does each trick help?"
    assert table["made_by"]["data"]["n_train"] == 500 and table["made_by_differs_in"] == []
    assert "- **Helps:** norm_inputs (+9.33 [" in md and "| norm_inputs | 60.33 ± 0.58 |" in md
    assert "extra_variant (" in md.split("**Hurts:**")[1]
    assert (out / "effects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    effects = (out / "effects.csv").read_text().splitlines()
    assert (
        effects[0] == "variant,rung,comparison,reference,effect,ci_low,ci_high,p_adjusted,verdict"
    )
    # every variant but the baseline, vs parent and vs baseline (norm_inputs' parent: baseline)
    assert [line.split(",")[:3] for line in effects[1:]] == [
        ["norm_inputs", "1", "vs parent"],
        ["norm_inputs", "1", "vs baseline"],
        ["extra_variant", "2", "vs parent"],
        ["extra_variant", "2", "vs baseline"],
    ]
    curves = [line.split(",") for line in (out / "curves.csv").read_text().splitlines()]
    assert curves[0] == [
        "variant",
        "epoch",
        "test_acc",
        "test_acc_min",
        "test_acc_max",
        "test_loss",
        "test_loss_min",
        "test_loss_max",
    ]
    assert len(curves) == 1 + 2 * 3  # 2 epochs, counted from 1, per variant
    baseline_2 = [float(v) for v in curves[2][2:]]  # epoch 2: the seeds' own scores, in %
    assert curves[2][:2] == ["baseline", "2"]
    assert baseline_2 == pytest.approx([51.0, 50.0, 52.0, 0.49, 0.48, 0.5])
    seeds = (out / "seeds.csv").read_text().splitlines()
    assert seeds[0] == "variant,rung,seed,micro_f1,mean,ci_low,ci_high" and len(seeds) == 1 + 9
    assert seeds[1].startswith("baseline,0,0,50.0,51.0,")
    assert "## Every seed" in md and "| norm_inputs | 60.00 | 61.00 | 60.00 |" in md


def test_missing_results_name_the_stage(tmp_path):
    project_params(tmp_path / "params.yaml", ["baseline"])
    with pytest.raises(UserError, match="evaluate@baseline-0-9"):
        compare.main(
            [
                "--params",
                str(tmp_path / "params.yaml"),
                "--results",
                str(tmp_path / "r"),
                "--out",
                str(tmp_path / "c"),
            ]
        )


def test_an_interrupted_compare_keeps_every_old_output(tmp_path, monkeypatch):
    """Ctrl-C while compare writes: its ten files are all the old ones, none half-new."""
    names = ["baseline", "other"]
    blocks = fake_results(
        tmp_path / "results", {"baseline": [0.5, 0.51, 0.52], "other": [0.6, 0.61, 0.6]}
    )
    project_params(tmp_path / "params.yaml", names, blocks)
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--results",
        str(tmp_path / "results"),
        "--out",
        str(tmp_path / "compare"),
    ]
    compare.main(args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "compare").iterdir()}
    assert len(before) == 10
    report = json.loads((tmp_path / "results/other/0-1/report.json").read_text())
    report["per_seed"] = {str(i): {"micro_f1": 0.9} for i in range(2)}
    (tmp_path / "results/other/0-1/report.json").write_text(json.dumps(report))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare.charts, "forest_plot", interrupted)  # after 3 of the 7 files
    with pytest.raises(KeyboardInterrupt):
        compare.main(args)
    assert {p.name: p.read_bytes() for p in (tmp_path / "compare").iterdir()} == before


# --- pairing the seeds --------------------------------------------------------------------


def test_a_small_effect_with_correlated_seeds_is_called_by_paired_and_missed_by_welch():
    """0.3 points on seeds that move together (r = 0.95): the study's usual case."""
    scores = _planted(0.003, r=0.95, seed=3)
    paired = compare.compare(scores, params.CompareParams(method="paired"))
    welch = compare.compare(scores, params.CompareParams(method="welch"))
    p, w = paired.variants["treated"].vs["baseline"], welch.variants["treated"].vs["baseline"]
    assert p.verdict == "helps" and p.method == "paired" and p.r > 0.8
    assert w.verdict == "no detectable effect" and w.method == "welch"
    assert (p.result.ci_high - p.result.ci_low) < 0.5 * (w.result.ci_high - w.result.ci_low)


def test_with_correlated_seeds_and_no_effect_paired_calls_at_alphas_rate():
    calls = [
        compare.compare(_planted(0.0, r=0.9, seed=s), params.CompareParams()).variants["treated"]
        for s in range(400)
    ]
    false_calls = sum(row.vs["baseline"].verdict != "no detectable effect" for row in calls)
    assert false_calls / 400 <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 400)  # 0.077


def test_seeds_that_differ_fall_back_to_welch_and_say_so():
    scores = _planted(0.01, r=0.9)
    scores["treated"] = {s + 100: v for s, v in scores["treated"].items()}
    table = compare.compare(scores, params.CompareParams())
    c = table.variants["treated"].vs["baseline"]
    assert c.result.method == "welch" and c.method == "welch (the seeds differ)" and c.r is None
    assert "fell back to Welch's test: welch (the seeds differ)" in writeup.markdown(table)
    row = table.to_json()["variants"]["treated"]
    assert row["test_vs_baseline"] == "welch (the seeds differ)" and row["r_vs_baseline"] is None


def test_the_json_and_the_answer_name_the_test_and_the_correlation():
    table = compare.compare(_planted(0.01, r=0.9), params.CompareParams())
    out = table.to_json()
    assert out["method"] == "paired" and out["test"].startswith("paired t-test")
    assert out["typical_sd_of"] == "per-seed differences"
    row = out["variants"]["treated"]
    assert row["test_vs_baseline"] == "paired" and 0.5 < row["r_vs_baseline"] <= 1
    md = writeup.markdown(table)
    assert "paired t-test on per-seed differences" in md and "Spread of the per-seed" in md
    assert ", r=0." in md
    welch = compare.compare(_planted(0.01, r=0.9), params.CompareParams(method="welch"))
    assert welch.to_json()["typical_sd_of"] == "scores" and "Welch's t-test" in welch.method_text


def test_the_slide_answers_each_trick_in_both_contexts_in_one_family(tmp_path):
    """compare.tricks' pairs [with, without]: each trick's effect on a bare model and taken out
    of the full recipe, with minus without (a pair the ladder compares the other way round is
    that one test, flipped, not a second one), all in one Holm family; the lead says which help
    in both, in one, in neither; comparison.json, tricks.csv and tricks.png carry them."""
    rng = np.random.default_rng(1)
    base = 0.5 + 0.01 * rng.standard_normal(6)

    def around(shift):
        return list(base + shift + 0.002 * rng.standard_normal(6))

    scores = {
        "baseline": list(base),
        "bare_tanh": around(-0.05),  # relu helps on a bare model
        "full": around(0.10),
        "full_tanh": around(0.05),  # ... and in the full recipe
        "full_mse": around(0.10),  # cross-entropy: no difference in the full recipe
        "bare_mse": around(-0.04),  # ... but helps on a bare model
    }
    names = list(scores)
    blocks = fake_results(tmp_path / "results", scores, block_size=6)
    parents = {"bare_tanh": "baseline", "bare_mse": "baseline", "full": "baseline"}
    parents |= {"full_tanh": "full", "full_mse": "full"}
    tricks = {
        "relu": {"bare": [["baseline", "bare_tanh"]], "full": [["full", "full_tanh"]]},
        "cross_entropy": {"bare": [["baseline", "bare_mse"]], "full": [["full", "full_mse"]]},
        "dropout": {"full": [["full", "nowhere"]]},  # not in the study: left out
    }
    path = project_params(tmp_path / "params.yaml", names, blocks, parents=parents)
    raw = yaml.safe_load(path.read_text())
    raw["variants"]["nowhere"] = dict(raw["variants"]["baseline"])
    raw["compare"]["tricks"] = tricks
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "compare"
    args = ["--params", str(path), "--results", str(tmp_path / "results"), "--out", str(out)]
    compare.main(args)
    table = json.loads((out / "comparison.json").read_text())
    relu_bare = table["tricks"]["relu"]["bare"][0]
    assert (relu_bare["with"], relu_bare["without"]) == ("baseline", "bare_tanh")
    vs_parent = table["variants"]["bare_tanh"]
    assert relu_bare["diff"] == pytest.approx(-vs_parent["diff_vs_parent"])  # the same test
    assert relu_bare["p_adj"] == vs_parent["p_adj_vs_parent"]
    assert relu_bare["ci_adj_low"] == pytest.approx(-vs_parent["ci_adj_high_vs_parent"])
    assert relu_bare["verdict"] == "helps" and vs_parent["verdict_vs_parent"] == "hurts"
    # Every pair is already a vs-parent or vs-baseline comparison: the family is those, once.
    assert table["comparisons"] == 7  # 5 vs baseline, full_tanh and full_mse vs full
    assert "dropout" not in table["tricks"]
    md = (out / "comparison.md").read_text()
    assert "## LeCun's slide, trick by trick" in md
    assert "- **Helps in both contexts:** relu." in md
    assert "- **Helps on a bare model only:** cross_entropy." in md
    assert "- **Could not be told apart in at least one context:** cross_entropy." in md
    rows = (out / "tricks.csv").read_text().splitlines()
    assert rows[0] == ",".join(charts.TRICK_FIELDS) and len(rows) == 1 + 4
    assert (out / "tricks.png").read_bytes()[:4] == b"\x89PNG"
