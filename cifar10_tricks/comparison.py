"""The comparison's result types: a variant against a reference rung, a row per variant, the table.

Built by the `compare` stage from :mod:`cifar10_tricks.inference`'s t-tests; written as
comparison.json by :meth:`Table.to_json`, as Markdown by :mod:`cifar10_tricks.writeup`, and
charted by :mod:`cifar10_tricks.charts`.  Scores are micro-F1 in [0, 1] units throughout;
:func:`points` is the one conversion to percentage points for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cifar10_tricks.inference import POWER, TTest

LABELS = ("baseline", "parent")  # the references each variant is compared with, in JSON order


def points(x: float | None) -> float | None:
    """[0, 1] units as percentage points (None stays None)."""
    return None if x is None else 100 * x


@dataclass(frozen=True)
class Comparison:
    """A variant against one reference rung (micro-F1 in [0, 1] units)."""

    reference: str
    result: TTest  # the t-test's difference, interval and p-value
    p_adjusted: float | None  # None: too few seeds to test
    mde: float | None  # minimum detectable effect at the table's level and power
    verdict: str  # helps | hurts | no detectable effect | needs >= 2 seeds per variant
    r: float | None  # correlation of the two variants' scores over their shared seeds
    fallback: str | None = None  # why a paired comparison fell back to Welch's test
    # The interval beside the verdict, at the level the verdict was tested at (Holm's step for
    # this comparison: inference.holm_levels), so it excludes zero exactly where the verdict is
    # helps or hurts; None with too few seeds.  ``level``: its significance level (1 - coverage).
    adjusted: tuple[float, float] | None = None
    level: float | None = None

    @property
    def method(self) -> str:
        """The test as every output names it: paired | welch | welch (<why>)."""
        return f"{self.result.method} ({self.fallback})" if self.fallback else self.result.method

    def flipped(self, reference: str | None = None) -> Comparison:
        """The same test the other way round (the reference minus the variant): differences
        and intervals negated, helps and hurts swapped; ``reference``: the other variant."""
        t = self.result

        def neg(x):
            return None if x is None else -x

        turned = replace(t, diff=-t.diff, ci_low=neg(t.ci_high), ci_high=neg(t.ci_low))
        swap = {"helps": "hurts", "hurts": "helps"}
        return replace(
            self,
            reference=reference or self.reference,
            result=turned,
            verdict=swap.get(self.verdict, self.verdict),
            adjusted=None if self.adjusted is None else (-self.adjusted[1], -self.adjusted[0]),
        )


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
class Grow:
    """Growing the study by one block of seeds (:func:`cifar10_tricks.params.grow`)."""

    seeds: tuple  # train.seeds as it would be: the blocks, the new one last
    added: int  # seeds added per variant
    models: int  # models that trains: added x variants (no seed already trained retrains)
    trained: int  # models this study trained
    # True: the block brings the study to the seeds a half-point effect needs; False: that is
    # more than params.yaml allows, and the block doubles the study instead.
    enough: bool = True

    @property
    def command(self) -> str:
        return f"dvc exp run -S 'train.seeds=[{','.join(map(str, self.seeds))}]'"


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
    method: str = "paired"  # the t-test, params key compare.test: paired | welch
    power: float = POWER
    chance: float | None = None  # 1 / the number of classes: a model that guesses
    made_by: dict | None = None  # what made the baseline's results (cifar10_tricks.provenance)
    differs: tuple[str, ...] = ()  # the keys of made_by in which some variant differs
    # The cheap way to the seeds a half-point effect needs (None where the study has them):
    # train.seeds with one block more, how many seeds that adds per variant and how many
    # models it trains in all (new ones only), against how many this study trained.
    grow: Grow | None = None
    # The rungs compared with the one listed before them, having no compare.parents entry.
    implicit: tuple[str, ...] = ()
    # LeCun's slide: per trick, per context (bare | full), each pair as (the variant with the
    # trick, its Comparison against the variant without it, the reference): with minus without.
    tricks: dict[str, dict[str, list[tuple[str, Comparison]]]] = field(default_factory=dict)

    @property
    def method_text(self) -> str:
        """The t-test in words, as every output names it."""
        if self.method == "paired":
            return "paired t-test on per-seed differences (two-sided)"
        return "Welch's t-test over seeds (two-sided)"

    @property
    def method_short(self) -> str:
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
                            f"diff_vs_{label}": c.result.diff,
                            f"ci95_low_vs_{label}": c.result.ci_low,
                            f"ci95_high_vs_{label}": c.result.ci_high,
                            f"p_vs_{label}": c.result.p,
                            f"p_adj_vs_{label}": c.p_adjusted,
                            f"ci_adj_low_vs_{label}": c.adjusted[0] if c.adjusted else None,
                            f"ci_adj_high_vs_{label}": c.adjusted[1] if c.adjusted else None,
                            f"ci_adj_coverage_vs_{label}": None if c.level is None else 1 - c.level,
                            f"mde_vs_{label}": c.mde,
                            f"verdict_vs_{label}": c.verdict,
                            f"test_vs_{label}": c.method,
                            f"r_vs_{label}": c.r,
                        }
                    )
            variants[name] = out
        return {
            "test": self.method_text,
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
            "made_by": self.made_by,
            "made_by_differs_in": list(self.differs),
            "parent_is_the_rung_before": list(self.implicit),
            "tricks": {
                trick: {
                    context: [_trick_json(w, c) for w, c in pairs]
                    for context, pairs in contexts.items()
                }
                for trick, contexts in self.tricks.items()
            },
            "grow": None
            if self.grow is None
            else {
                "command": self.grow.command,
                "seeds_added": self.grow.added,
                "models_to_train": self.grow.models,
                "models_trained": self.grow.trained,
                "reaches_half_point": self.grow.enough,
            },
        }


def _trick_json(with_: str, c: Comparison) -> dict:
    """One pair of a trick in comparison.json: with minus without, [0, 1] units."""
    return {
        "with": with_,
        "without": c.reference,
        "diff": c.result.diff,
        "ci95_low": c.result.ci_low,
        "ci95_high": c.result.ci_high,
        "ci_adj_low": c.adjusted[0] if c.adjusted else None,
        "ci_adj_high": c.adjusted[1] if c.adjusted else None,
        "p": c.result.p,
        "p_adj": c.p_adjusted,
        "mde": c.mde,
        "verdict": c.verdict,
        "test": c.method,
    }
