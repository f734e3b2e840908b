"""Stage `compare`: does each trick help?  Effect sizes with intervals, over seeds.

Inputs:  results/<variant>/<seeds>/report.json for every variant and every block of
         ``train.seeds`` (per-seed scores and test curves, from `evaluate@<variant>-<seeds>`,
         :mod:`cifar10_tricks.scores`): files in git, so this stage runs in a clone that has
         pulled nothing.
Params:  ``train.seeds`` (the blocks to gather), ``variants`` (their names and ladder order)
         and ``compare`` (baseline, alpha, test, correction, parents).
Outputs (in ``--out``, i.e. compare/):
  comparison.json   per variant: mean and sample std of micro-F1 over seeds and its 95% CI;
                    against the baseline and against the parent rung: the difference in
                    means with its 95% CI and p-value (``compare.test``: paired, on the
                    per-seed differences, or Welch's; which one per comparison, and the
                    correlation of the seed scores), the p-value adjusted over the family
                    of comparisons (Holm), the minimum detectable effect (80% power) and the
                    verdict (helps / hurts / no detectable effect, from the adjusted p).
  comparison.md     for people: one line on what data and run it is about (saying so when the
                    images are generated or the baseline is near chance), the answer (which
                    tricks help, hurt, or could not be told apart, and how large an effect
                    could have gone unseen, and the `dvc exp run` that adds the seeds a
                    half-point effect needs, training only those), then the table.
                    comparison.json carries the same record of what made it, ``made_by``.
  summary.json      DVC metrics: ``micro_f1.<variant>`` (mean over seeds) for every variant,
                    names unique across metrics files: a column per variant in `dvc exp show`
                    (the README's ``dvc exp show --only-changed --drop ...``).
  effects.png       forest plot: each rung's effect vs its parent and vs the baseline, 95% CIs.
  effects.csv       the same as DVC plot data (template .dvc/plots/forest.json).
  micro_f1.png      every seed's micro-F1 as a dot, each variant's mean and 95% CI, the
                    baseline's mean and chance marked.
  seeds.csv         the same as DVC plot data (template .dvc/plots/seed_dots.json).
  curves.csv        test accuracy (%) and loss per epoch, from 1: the mean over seeds and the
                    lowest and highest seed, every variant.

A variant added to params.yaml appears in all of them with no code change.  This module pairs
the variants and builds the table (:mod:`cifar10_tricks.comparison`'s types) from
:mod:`cifar10_tricks.inference`'s t-tests; :mod:`cifar10_tricks.writeup` words it and
:mod:`cifar10_tricks.charts` draws it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from cifar10_tricks import charts, params, writeup
from cifar10_tricks.cli import run_main
from cifar10_tricks.comparison import Comparison, Grow, Row, Table
from cifar10_tricks.curves import CURVE_FIELDS, curve_rows
from cifar10_tricks.files import atomic_group, write_csv, write_json, write_text
from cifar10_tricks.inference import (
    TTest,
    correlation,
    detectable,
    holm,
    holm_levels,
    interval,
    mean_ci,
    paired,
    seeds_needed,
    welch,
)
from cifar10_tricks.params import parent_of
from cifar10_tricks.scores import read_scores, remove_stale

log = logging.getLogger("cifar10_tricks.compare")

HALF_POINT = 0.005  # in [0, 1] units of micro-F1


def verdict(diff: float, p_adjusted: float | None, alpha: float) -> str:
    if p_adjusted is None:
        return "needs >= 2 seeds per variant"
    if p_adjusted < alpha:
        return "helps" if diff > 0 else "hurts"
    return "no detectable effect"


def shared_seeds(a: dict[int, float], b: dict[int, float]) -> tuple[list[float], list[float]]:
    """Two variants' scores over the seeds both ran, in seed order: the pairs of a paired test."""
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def contrast(
    a: dict[int, float], b: dict[int, float], pairs: tuple[list[float], list[float]], method: str
) -> tuple[TTest, str | None]:
    """(the t-test of a against b, why a paired test fell back to Welch's or None); ``pairs``
    is :func:`shared_seeds` of the two.

    Paired where both variants ran the same seeds, at least two: seed s of every variant
    shares its data order (and, for the same init scheme, its initial weights), so the
    per-seed differences carry the effect without most of the seed-to-seed noise.
    """
    if method == "paired":
        if set(a) != set(b):
            return welch(list(a.values()), list(b.values())), "the seeds differ"
        if len(a) < 2:
            return welch(list(a.values()), list(b.values())), "fewer than 2 seeds"
        return paired(*pairs), None
    return welch(list(a.values()), list(b.values())), None


def trick_pairs(names: list[str], cp: params.CompareParams) -> dict[str, dict[str, list]]:
    """compare.tricks' pairs [with, without] whose variants are both in ``names``, per trick
    and context; tricks and contexts left with none are left out."""
    out: dict[str, dict[str, list]] = {}
    for trick, contexts in cp.tricks.items():
        for context in params.CONTEXTS:
            pairs = [tuple(p) for p in contexts.get(context, ()) if set(p) <= set(names)]
            if pairs:
                out.setdefault(trick, {})[context] = pairs
    return out


def compare(
    scores: dict[str, dict[int, float]], cp: params.CompareParams, chance: float | None = None
) -> Table:
    """The comparison table, variants in ladder order; ``scores``: per variant, seed -> micro-F1.

    Every distinct (variant, reference) pair is one test of the family that the correction
    covers (a rung whose parent is the baseline counts once); verdicts come from the
    adjusted p-values, and the minimum detectable effect is stated at the strictest level
    the correction applies (alpha / family size for Holm).
    """
    names = list(scores)
    refs = {
        name: {"baseline": cp.baseline, "parent": parent_of(names, name, cp.parents)}
        for name in names
    }
    pairs = list(
        dict.fromkeys(
            (name, ref)
            for name in names
            for ref in refs[name].values()
            if ref is not None and ref != name
        )
    )
    # The slide's tricks, [with, without]: a pair the ladder already compares (either way
    # round) is that one test, not a second one in the family.
    tricks = trick_pairs(names, cp)
    for contexts in tricks.values():
        for pair in (p for ps in contexts.values() for p in ps):
            if pair not in pairs and pair[::-1] not in pairs:
                pairs.append(pair)
    # Each pair's scores over the seeds both variants ran: for the paired test and for r.
    shared = {(a, b): shared_seeds(scores[a], scores[b]) for a, b in pairs}
    tests = {(a, b): contrast(scores[a], scores[b], shared[a, b], cp.method) for a, b in pairs}
    tested = [pair for pair in pairs if tests[pair][0].p is not None]
    raw = [tests[pair][0].p for pair in tested]
    adjusted = dict(zip(tested, holm(raw) if cp.correction == "holm" else raw))
    level = cp.alpha / len(tested) if cp.correction == "holm" and tested else cp.alpha
    steps = dict(
        zip(
            tested, holm_levels(raw, cp.alpha) if cp.correction == "holm" else [cp.alpha] * len(raw)
        )
    )

    comparisons = {
        pair: Comparison(
            pair[1],
            t,
            adjusted.get(pair),
            detectable(t.se, t.df, level),
            verdict(t.diff, adjusted.get(pair), cp.alpha),
            correlation(*shared[pair]),
            fallback,
            interval(t, steps[pair]) if pair in steps else None,
            steps.get(pair),
        )
        for pair, (t, fallback) in tests.items()
    }
    rows = {}
    for name in names:
        values = list(scores[name].values())
        mean, std, low, high = mean_ci(values)
        # micro-F1 lives in [0, 1]; a t-interval from few seeds can reach past it: cut, and say so
        clipped = low is not None and (low < 0 or high > 1)
        if low is not None:
            low, high = max(0.0, low), min(1.0, high)
        vs = {
            label: comparisons[(name, ref)]
            for label, ref in refs[name].items()
            if ref is not None and ref != name
        }
        rows[name] = Row(mean, std, low, high, len(values), vs, dict(scores[name]), clipped)
    by_trick = {
        trick: {
            context: [
                (
                    w,
                    comparisons[w, wo]
                    if (w, wo) in comparisons
                    else comparisons[wo, w].flipped(wo),
                )
                for w, wo in ps
            ]
            for context, ps in contexts.items()
        }
        for trick, contexts in tricks.items()
    }
    # The spread for planning, a median so that one unstable variant (a seed stuck at chance,
    # say) does not set it for all: of the variants' seed-to-seed sds for Welch; of the
    # per-seed differences of the paired comparisons for the paired test.
    if cp.method == "paired":
        sds = [t.sd_diff for t, _ in tests.values() if t.method == "paired" and t.p is not None]
    else:
        sds = [row.std for row in rows.values() if row.seeds > 1]
    typical = float(np.median(sds)) if sds else None
    return Table(
        rows,
        cp.alpha,
        cp.baseline,
        cp.correction,
        len(tested),
        level,
        typical,
        seeds_needed(typical, HALF_POINT, level, paired=cp.method == "paired")
        if typical is not None
        else None,
        cp.method,
        chance=chance,
        implicit=tuple(n for n in names if n not in cp.parents and parent_of(names, n, cp.parents)),
        tricks=by_trick,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="the params file (params.yaml)")
    parser.add_argument(
        "--results", type=Path, required=True, help="folder of results/<variant>/<seeds>/"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the comparison files")
    args = parser.parse_args(argv)

    p = params.load(args.params)
    names = list(p.study)
    study = read_scores(args.results, names, p.train.seeds)
    table = compare(study.scores, p.compare, chance=study.chance)
    base = study.made_by[p.compare.baseline]
    # Every block's record against the baseline's (the seeds differ from block to block).
    differs = sorted(
        {k for m in study.blocks_made_by for k in base if k != "seeds" and m.get(k) != base[k]}
    )
    table = dataclasses.replace(
        table, made_by=base, differs=tuple(differs), grow=grow(p.train, len(names), table)
    )
    curves = curve_rows(study.curves)
    text = writeup.markdown(table)
    with atomic_group():  # all ten files are replaced together, or none is
        write_outputs(table, curves, text, args.out)
    # What other params left in results/ (a dropped block or variant) is no part of this study:
    # gone, so that neither git nor `dvc metrics show results/*/*/metrics.json` shows it as
    # current (git's history keeps it; DVC's cache keeps the models).
    stale = remove_stale(args.results, names, p.train.seeds)
    if stale:
        log.info(
            "compare: removed %d folder(s) of blocks or variants params.yaml no longer names: %s",
            len(stale),
            ", ".join(str(f) for f in stale[:3]) + (", ..." if len(stale) > 3 else ""),
        )
    log.info("%s", writeup.lead(table, str(args.out / "comparison.md")))


def grow(tp: params.TrainParams, variants: int, table: Table) -> Grow | None:
    """The block of seeds that brings every variant to the seeds a half-point effect needs; where
    that is more than params.yaml allows, the block that doubles the study (or brings it to
    the most params.yaml allows).  None where the study has the seeds already, or where no
    valid block follows its highest seed."""
    need, have = table.seeds_for_half_point, len(tp.all_seeds)
    if need is not None and need <= have:
        return None
    enough = need is not None and need <= params.MAX_SEEDS
    target = need if enough else min(2 * have, params.MAX_SEEDS)
    if target <= have:
        return None
    blocks, added = params.grow(tp.seeds, target)
    if not added or params.seeds_problem(list(blocks)):  # e.g. past the highest seed allowed
        return None
    return Grow(blocks, len(added), len(added) * variants, have * variants, enough)


def write_outputs(table: Table, curves: list[dict], text: str, out: Path) -> None:
    """The ten files of ``out``; with a single variant there is nothing to compare, but the
    plots' files still exist (the slide's chart empty where the study compares no trick)."""
    rows = charts.effect_rows(table)
    write_csv(
        out / "effects.csv",
        charts.EFFECT_FIELDS,
        [[r[f] for f in charts.EFFECT_FIELDS] for r in rows],
    )
    write_csv(out / "curves.csv", CURVE_FIELDS, [[r[f] for f in CURVE_FIELDS] for r in curves])
    write_csv(
        out / "seeds.csv",
        charts.SEED_FIELDS,
        [[r[f] for f in charts.SEED_FIELDS] for r in charts.seed_rows(table)],
    )
    charts.dot_plot(table, out / "micro_f1.png")
    tricks = charts.trick_rows(table)
    write_csv(
        out / "tricks.csv",
        charts.TRICK_FIELDS,
        [[r[f] for f in charts.TRICK_FIELDS] for r in tricks],
    )
    charts.trick_plot(table, tricks, out / "tricks.png")
    charts.forest_plot(table, rows, out / "effects.png")
    write_json(out / "comparison.json", table.to_json())
    write_json(out / "summary.json", {"micro_f1": {n: r.mean for n, r in table.variants.items()}})
    write_text(out / "comparison.md", text)


if __name__ == "__main__":
    run_main(main)
