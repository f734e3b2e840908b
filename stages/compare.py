"""Stage `compare`: does each trick help?  Effect sizes with intervals, over seeds.

Inputs:  results/<variant>/report.json (per-seed scores, from `evaluate@<variant>`) and
         results/<variant>/live/plots/metrics/test/*.tsv (per-epoch curves, from `train`).
Params:  ``variants`` (their names and ladder order) and ``compare`` (baseline, alpha,
         test, correction, parents).
Outputs (in ``--out``, i.e. compare/):
  comparison.json   per variant: mean and sample std of micro-F1 over seeds and its 95% CI;
                    against the baseline and against the parent rung: the difference in
                    means with its 95% CI and p-value (``compare.test``: paired, on the
                    per-seed differences, or Welch's; which one per comparison, and the
                    correlation of the seed scores), the p-value adjusted over the family
                    of comparisons (Holm), the minimum detectable effect (80% power) and the
                    verdict (helps / hurts / no detectable effect, from the adjusted p).
  comparison.md     for people: the answer first (which tricks help, hurt, or could not be
                    told apart, and how large an effect could have gone unseen), then the table.
  summary.json      DVC metrics: ``micro_f1.<variant>`` (mean over seeds) for every variant,
                    names unique across metrics files: a column per variant in `dvc exp show`
                    (the README's ``--only-changed --drop '^(?!Experiment|micro_f1[.])'``).
  effects.png       forest plot: each rung's effect vs its parent and vs the baseline, 95% CIs.
  effects.csv       the same as DVC plot data (template .dvc/plots/forest.json).
  micro_f1.png      every seed's micro-F1 as a dot, each variant's mean and 95% CI, the
                    baseline's mean and chance marked.
  seeds.csv         the same as DVC plot data (template .dvc/plots/seed_dots.json).
  curves.csv        test accuracy (%) and loss per epoch, from 1: the mean over seeds and the
                    lowest and highest seed, every variant.

A variant added to params.yaml appears in all of them with no code change.  The table is
typed (:class:`Table`) until :meth:`Table.to_json` writes it; the statistics are
:mod:`stages.inference`'s, the charts :mod:`stages.charts`'.
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages import charts, params
from stages.inference import (
    POWER,
    Test,
    correlation,
    detectable,
    holm,
    mean_ci,
    paired,
    seeds_needed,
    welch,
)
from stages.io import (
    UserError,
    atomic_group,
    read_json,
    require,
    run_main,
    write_csv,
    write_json,
    write_text,
)

log = logging.getLogger("cifar10_tricks.compare")

HALF_POINT = 0.005  # in [0, 1] units of micro-F1
LABELS = ("baseline", "parent")  # the references each variant is compared with, in JSON order


@dataclass(frozen=True)
class Comparison:
    """A variant against one reference rung (micro-F1 in [0, 1] units)."""

    reference: str
    test: Test
    p_adjusted: float | None  # None: too few seeds to test
    mde: float | None  # minimum detectable effect at the table's level and power
    verdict: str  # helps | hurts | no detectable effect | needs >= 2 seeds per variant
    r: float | None  # correlation of the two variants' scores over their shared seeds
    fallback: str | None = None  # why a paired comparison fell back to Welch's test

    @property
    def method(self) -> str:
        """The test as every output names it: paired | welch | welch (<why>)."""
        return f"{self.test.method} ({self.fallback})" if self.fallback else self.test.method


@dataclass(frozen=True)
class Row:
    """One variant: micro-F1 over seeds, and its comparisons by label (baseline, parent)."""

    mean: float
    std: float
    ci_low: float | None  # None with one seed
    ci_high: float | None
    seeds: int
    vs: dict[str, Comparison]  # a label is absent where the reference is the variant itself
    scores: dict[int, float]  # seed -> micro-F1
    clipped: bool = False  # the t-interval reached past [0, 1] and was cut there


@dataclass(frozen=True)
class Table:
    """The whole comparison, variants in ladder order."""

    variants: dict[str, Row]
    alpha: float
    baseline: str
    correction: str
    comparisons: int  # tests in the family the correction covers
    mde_level: float  # the level the detectable effects are stated at
    typical_sd: float | None  # of the scores (welch) or of the per-seed differences (paired)
    seeds_for_half_point: int | None
    method: str = "paired"  # compare.test: paired | welch
    power: float = POWER
    chance: float | None = None  # 1 / the number of classes: a model that guesses

    @property
    def test(self) -> str:
        """The test in words, as every output names it."""
        if self.method == "paired":
            return "paired t-test on per-seed differences (two-sided)"
        return "Welch's t-test over seeds (two-sided)"

    @property
    def short_test(self) -> str:
        return "paired t" if self.method == "paired" else "Welch"

    @property
    def adjusted(self) -> str:
        """How the verdicts' p-values were corrected, in the words every output uses."""
        return "Holm-adjusted" if self.correction == "holm" else "unadjusted"

    @property
    def min_seeds(self) -> int:
        return min((r.seeds for r in self.variants.values()), default=0)

    def to_json(self) -> dict:
        """comparison.json: per variant, flat ``<field>_vs_<label>`` keys (points as [0, 1])."""
        variants = {}
        for name, row in self.variants.items():
            out = {
                "micro_f1": row.mean,
                "micro_f1_sd": row.std,
                "ci95_low": row.ci_low,
                "ci95_high": row.ci_high,
                "ci95_clipped": row.clipped,
                "seeds": row.seeds,
            }
            for label in LABELS:
                if label in row.vs:
                    c = row.vs[label]
                    out.update(
                        {
                            f"vs_{label}": c.reference,
                            f"diff_vs_{label}": c.test.diff,
                            f"ci95_low_vs_{label}": c.test.ci_low,
                            f"ci95_high_vs_{label}": c.test.ci_high,
                            f"p_vs_{label}": c.test.p,
                            f"p_adj_vs_{label}": c.p_adjusted,
                            f"mde_vs_{label}": c.mde,
                            f"verdict_vs_{label}": c.verdict,
                            f"test_vs_{label}": c.method,
                            f"r_vs_{label}": c.r,
                        }
                    )
            variants[name] = out
        return {
            "test": self.test,
            "method": self.method,
            "alpha": self.alpha,
            "baseline": self.baseline,
            "correction": self.correction,
            "comparisons": self.comparisons,
            "mde_level": self.mde_level,
            "power": self.power,
            "typical_sd": self.typical_sd,
            "typical_sd_of": "per-seed differences" if self.method == "paired" else "scores",
            "seeds_for_half_point": self.seeds_for_half_point,
            "variants": variants,
        }


def parent_of(names: list[str], name: str, parents: dict[str, str]) -> str | None:
    if name in parents:
        return parents[name]
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def verdict(diff: float, p_adjusted: float | None, alpha: float) -> str:
    if p_adjusted is None:
        return "needs >= 2 seeds per variant"
    if p_adjusted < alpha:
        return "helps" if diff > 0 else "hurts"
    return "no detectable effect"


def test_pair(a: dict[int, float], b: dict[int, float], method: str) -> tuple[Test, str | None]:
    """(the test of a against b, why a paired test fell back to Welch's or None).

    Paired where both variants ran the same seeds, at least two: seed s of every variant
    shares its data order (and, for the same init scheme, its initial weights), so the
    per-seed differences carry the effect without most of the seed-to-seed noise.
    """
    if method == "paired":
        if set(a) != set(b):
            return welch(list(a.values()), list(b.values())), "the seeds differ"
        if len(a) < 2:
            return welch(list(a.values()), list(b.values())), "fewer than 2 seeds"
        seeds = sorted(a)
        return paired([a[s] for s in seeds], [b[s] for s in seeds]), None
    return welch(list(a.values()), list(b.values())), None


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
    tests = {pair: test_pair(scores[pair[0]], scores[pair[1]], cp.test) for pair in pairs}
    tested = [pair for pair in pairs if tests[pair][0].p is not None]
    raw = [tests[pair][0].p for pair in tested]
    adjusted = dict(zip(tested, holm(raw) if cp.correction == "holm" else raw))
    level = cp.alpha / len(tested) if cp.correction == "holm" and tested else cp.alpha

    # Each pair's scores over the seeds both variants ran, in seed order: for r, and for the
    # spread of the per-seed differences.
    shared = {}
    for a, b in pairs:
        seeds = sorted(set(scores[a]) & set(scores[b]))
        shared[a, b] = [scores[a][s] for s in seeds], [scores[b][s] for s in seeds]

    comparisons = {
        pair: Comparison(
            pair[1],
            t,
            adjusted.get(pair),
            detectable(t.se, t.df, level),
            verdict(t.diff, adjusted.get(pair), cp.alpha),
            correlation(*shared[pair]),
            fallback,
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
    # The spread for planning, a median so that one unstable variant (a seed stuck at chance,
    # say) does not set it for all: of the variants' seed-to-seed sds for Welch; of the
    # per-seed differences of the paired comparisons for the paired test.
    if cp.test == "paired":
        sds = [
            float(np.std(np.subtract(*shared[p]), ddof=1))
            for p, (t, fb) in tests.items()
            if t.method == "paired" and t.p is not None
        ]
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
        seeds_needed(typical, HALF_POINT, level, paired=cp.test == "paired")
        if typical is not None
        else None,
        cp.test,
        chance=chance,
    )


def read_reports(results: Path, names: list[str]) -> tuple[dict[str, dict[int, float]], float]:
    """Each variant's micro-F1 per seed (seed -> score) from its report.json, checked, and
    chance: 1 / the number of classes the reports name."""
    scores, chance = {}, None
    for name in names:
        path = results / name / "report.json"
        report = read_json(path, f"evaluate@{name}")
        try:
            values = {
                int(s): float(report["per_seed"][str(s)]["micro_f1"]) for s in report["seeds"]
            }
            classes = report["classes"]
        except (TypeError, KeyError, ValueError):
            values, classes = {}, None
        if (
            not values
            or not all(0 <= v <= 1 for v in values.values())
            or not isinstance(classes, list)
            or len(classes) < 2
        ):
            raise UserError(
                f"{path} holds no per-seed micro-F1 in [0, 1] or no class names; "
                f"rerun `dvc repro -f evaluate@{name}`."
            )
        scores[name] = values
        chance = chance or 1 / len(classes)  # every variant scores the same data set
    return scores, chance


def _series(path: Path, metric: str, name: str) -> list[float]:
    """One DVCLive curve (a value per epoch), checked."""
    require(path, f"train@{name}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            values = [float(r[metric]) for r in csv.DictReader(f, delimiter="\t")]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{path} is not DVCLive's per-epoch {metric} ({type(exc).__name__}: {exc}); "
            f"rerun `dvc repro -f train@{name}`."
        ) from None
    if not values:
        raise UserError(f"{path} holds no epochs; rerun `dvc repro -f train@{name}`.")
    return values


CURVE_FIELDS = (
    "variant",
    "epoch",
    "test_acc",
    "test_acc_min",
    "test_acc_max",
    "test_loss",
    "test_loss_min",
    "test_loss_max",
)


def read_curves(results: Path, seeds: dict[str, list[int]]) -> list[dict]:
    """Per variant and epoch (counted from 1): test accuracy (%) and loss, the mean over seeds
    and the lowest and highest seed (DVCLive's per-seed curves)."""
    rows = []
    for name, variant_seeds in seeds.items():
        metrics = results / name / "live" / "plots" / "metrics"
        per_seed = {
            metric: [
                _series(metrics / f"seed_{s}" / "test" / f"{metric}.tsv", metric, name)
                for s in variant_seeds
            ]
            for metric in ("acc", "loss")
        }
        epochs = {len(c) for curves in per_seed.values() for c in curves}
        if len(epochs) != 1:
            raise UserError(
                f"{metrics}: the seeds' curves have different lengths; "
                f"rerun `dvc repro -f train@{name}`."
            )
        for e in range(epochs.pop()):
            row = {"variant": name, "epoch": e + 1}
            for metric, scale in (("acc", 100.0), ("loss", 1.0)):
                at = np.array([c[e] for c in per_seed[metric]]) * scale
                row |= {
                    f"test_{metric}": round(float(at.mean()), 6),
                    f"test_{metric}_min": round(float(at.min()), 6),
                    f"test_{metric}_max": round(float(at.max()), 6),
                }
            rows.append(row)
    return rows


# --- comparison.md ---------------------------------------------------------------------


def _pts(x: float | None, signed: bool = True) -> str:
    """[0, 1] units as percentage points ("—" for none)."""
    return "—" if x is None else f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def _unseen(c: Comparison) -> str:
    """How large an effect this comparison could have missed, in words."""
    if c.mde is not None:
        return f"an effect under {_pts(c.mde, False)} points could go unseen"
    return "the seeds spread so widely that even an effect of more than 200 points could go unseen"


def _effect(c: Comparison) -> str:
    """'+1.23 [+0.40, +2.06] vs ref': a difference with its 95% CI, in points."""
    t = c.test
    ci = f" [{_pts(t.ci_low)}, {_pts(t.ci_high)}]" if t.ci_low is not None else ""
    return f"{_pts(t.diff)}{ci} vs {c.reference}"


def answer(table: Table) -> list[str]:
    """The lead of comparison.md: each rung's trick against the rung it builds on."""
    groups: dict[str, list[str]] = {"helps": [], "hurts": [], "no detectable effect": []}
    for name, row in table.variants.items():
        c = row.vs.get("parent")
        if c is None or c.verdict not in groups:
            continue
        text = f"{name} ({_effect(c)}"
        if c.verdict == "no detectable effect":
            text += f"; {_unseen(c)}"
        groups[c.verdict].append(text + ")")
    family = (
        f"Holm-adjusted over the table's {table.comparisons} comparisons"
        if table.correction == "holm"
        else f"unadjusted, {table.comparisons} comparisons"
    )
    fallbacks = sorted(
        {c.method for r in table.variants.values() for c in r.vs.values() if c.fallback}
    )
    lines = [
        "## Does each trick help?",
        "",
        f"Each rung against the rung it builds on: difference in mean test micro-F1 in points "
        f"with its 95% CI, over {table.min_seeds} seeds; {table.test}, {family}, "
        f"alpha {table.alpha}."
        + (
            f" Some comparisons fell back to Welch's test: {'; '.join(fallbacks)}."
            if fallbacks
            else ""
        ),
        "",
    ]
    for key, title in (
        ("helps", "Helps"),
        ("hurts", "Hurts"),
        ("no detectable effect", "Could not be told apart"),
    ):
        lines.append(f"- **{title}:** " + ("; ".join(groups[key]) if groups[key] else "none") + ".")
    if table.typical_sd is not None:
        need = table.seeds_for_half_point
        lines += [
            "",
            (
                f"Spread of the per-seed differences: sd {_pts(table.typical_sd, False)} points "
                "(the median over comparisons)"
                if table.method == "paired"
                else f"Seed-to-seed spread: sd {_pts(table.typical_sd, False)} points (the "
                "median over variants)"
            )
            + ". At that spread a half-point effect needs "
            + (f"about {need} seeds per variant" if need else "more than 1,000 seeds per variant")
            + f" to be detected with {table.power:.0%} power at the level used here "
            f"({table.mde_level:.3g})"
            + (
                f"; `dvc exp run -S 'train.seeds=[{','.join(map(str, range(need)))}]'` sets them."
                if need and need <= 40
                else "."
            ),
        ]
    return lines


def markdown(table: Table) -> str:
    """The comparison for people: the answer first, then the full table (Markdown, points)."""

    def cell(row: Row, label: str) -> str:
        c = row.vs.get(label)
        if c is None:
            return "—"
        adj = (
            f", adj. {_p(c.p_adjusted)}"
            if table.correction != "none" and c.p_adjusted is not None
            else ""
        )
        mde = (
            f", MDE {_pts(c.mde, False) if c.mde is not None else 'over 200'}"
            if c.verdict == "no detectable effect"
            else ""
        )
        r = f", r={c.r:.2f}" if c.r is not None else ""
        other = f", {c.method}" if c.method != table.method else ""
        return f"{_effect(c)} (p={_p(c.test.p)}{adj}, {c.verdict}{mde}{r}{other})"

    def ci(row: Row) -> str:
        if row.ci_low is None:
            return "— (one seed)"
        clipped = " (cut at the scale's end)" if row.clipped else ""
        return f"{100 * row.ci_low:.2f} – {100 * row.ci_high:.2f}{clipped}"

    lines = answer(table) + [
        "",
        "## All comparisons",
        "",
        f"Test micro-F1 (%), mean ± sd over seeds and the 95% CI of the mean; differences in "
        f"points with their 95% CI; {table.test}, p-values {table.adjusted} for the verdict at "
        f"alpha {table.alpha}; MDE: the difference this run would detect with "
        f"{table.power:.0%} power; r: the correlation of the two variants' scores over seeds.",
        "",
        "| variant | micro-F1 | 95% CI | vs baseline | vs parent rung |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in table.variants.items():
        lines.append(
            f"| {name} | {100 * row.mean:.2f} ± {100 * row.std:.2f} | {ci(row)} "
            f"| {cell(row, 'baseline')} | {cell(row, 'parent')} |"
        )
    seeds = sorted({s for row in table.variants.values() for s in row.scores})
    lines += [
        "",
        "## Every seed",
        "",
        "Test micro-F1 (%) of each seed; seed s of every variant saw the same data order.",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- |" + " --- |" * len(seeds),
    ]
    for name, row in table.variants.items():
        cells = [f"{100 * row.scores[s]:.2f}" if s in row.scores else "—" for s in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", type=Path, required=True, help="folder of results/<variant>/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the comparison files")
    args = parser.parse_args(argv)

    p = params.load(args.params)
    names = list(p.variants)
    scores, chance = read_reports(args.results, names)
    table = compare(scores, p.compare, chance=chance)
    curves = read_curves(args.results, {name: list(scores[name]) for name in names})
    text = markdown(table)
    with atomic_group():  # all eight files are replaced together, or none is
        write_outputs(table, curves, text, args.out)
    log.info("%s", text)


def write_outputs(table: Table, curves: list[dict], text: str, out: Path) -> None:
    """The eight files of ``out``; with a single variant there is nothing to compare, but the
    plot's file still exists."""
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
    charts.forest_plot(table, rows, out / "effects.png")
    write_json(out / "comparison.json", table.to_json())
    write_json(out / "summary.json", {"micro_f1": {n: r.mean for n, r in table.variants.items()}})
    write_text(out / "comparison.md", text)


if __name__ == "__main__":
    run_main(main)
