"""The comparison's charts: the forest plot and the per-seed dot plot (PNGs, and their data as
DVC plot rows).

Drawn with matplotlib's object API (``Figure``), not pyplot: no GUI backend, no global state,
and a faster import.  Numbers are in percentage points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar10_tricks.comparison import Table, points
from cifar10_tricks.files import atomic_path

LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6}
VERDICT_COLORS = {"helps": "#2b8a3e", "hurts": "#c92a2a", "no detectable effect": "#4c6ef5"}
# The forest plot's data, one row per comparison (effect_rows), as effects.csv's columns.
EFFECT_FIELDS = (
    "variant",
    "rung",
    "comparison",
    "reference",
    "effect",
    "ci_low",
    "ci_high",
    "p_adjusted",
    "verdict",
)


# The slide's chart, one row per pair of a trick (trick_rows), as tricks.csv's columns.
TRICK_FIELDS = (
    "trick",
    "order",
    "context",
    "with",
    "without",
    "effect",
    "ci_low",
    "ci_high",
    "verdict",
)
CONTEXT_LABELS = {"bare": "on a bare model", "full": "taken out of the full recipe"}


# The dot plot's data, one row per variant and seed: every seed's score with its variant's mean
# and 95% CI (points), as seeds.csv's columns.
SEED_FIELDS = ("variant", "rung", "seed", "micro_f1", "mean", "ci_low", "ci_high")


def _points(x: float | None) -> float | str:
    """[0, 1] units as points, to 4 decimals; an empty CSV cell for none."""
    return "" if x is None else round(points(x), 4)


def seed_rows(table: Table) -> list[dict]:
    """One row per variant and seed, ladder order (points)."""
    return [
        {
            "variant": name,
            "rung": rung,
            "seed": seed,
            "micro_f1": _points(score),
            "mean": _points(row.mean),
            "ci_low": _points(row.ci_low),
            "ci_high": _points(row.ci_high),
        }
        for rung, (name, row) in enumerate(table.variants.items())
        for seed, score in row.scores.items()
    ]


def effect_rows(table: Table) -> list[dict]:
    """One row per comparison, ladder order, vs parent before vs baseline: the forest plot's
    data (points; an empty string where too few seeds gave no interval).  The interval is the
    one beside the verdict (Holm-adjusted: :attr:`Comparison.adjusted`), so a mark's colour
    and its interval never disagree."""
    rows = []
    for rung, (name, row) in enumerate(table.variants.items()):
        for label in ("parent", "baseline"):
            c = row.vs.get(label)
            if c is None:
                continue
            t = c.result
            low, high = c.adjusted if c.adjusted else (t.ci_low, t.ci_high)
            rows.append(
                {
                    "variant": name,
                    "rung": rung,
                    "comparison": f"vs {label}",
                    "reference": c.reference,
                    "effect": _points(t.diff),
                    "ci_low": _points(low),
                    "ci_high": _points(high),
                    "p_adjusted": c.p_adjusted if c.p_adjusted is not None else "",
                    "verdict": c.verdict,
                }
            )
    return rows


def trick_rows(table: Table) -> list[dict]:
    """One row per pair [with, without] of each trick of LeCun's slide, in compare.tricks'
    order, bare model before full recipe: with minus without in points, the verdict's
    interval (Holm-adjusted)."""
    rows = []
    for order, (trick, contexts) in enumerate(table.tricks.items()):
        for context in ("bare", "full"):
            for with_, c in contexts.get(context, ()):
                low, high = c.adjusted if c.adjusted else (c.result.ci_low, c.result.ci_high)
                rows.append(
                    {
                        "trick": trick,
                        "order": order,
                        "context": CONTEXT_LABELS[context],
                        "with": with_,
                        "without": c.reference,
                        "effect": _points(c.result.diff),
                        "ci_low": _points(low),
                        "ci_high": _points(high),
                        "verdict": c.verdict,
                    }
                )
    return rows


def trick_plot(table: Table, rows: list[dict], target: Path) -> None:
    """Each trick of the slide, with it against without it: on a bare model (circles) and
    taken out of the full recipe (squares), one line per pair, the verdicts' intervals."""
    from matplotlib.figure import Figure

    lines = [(r["trick"], r["context"], r["without"]) for r in rows]
    fig = Figure(figsize=(9.5, 0.32 * max(1, len(lines)) + 1.6), dpi=120)
    ax = fig.subplots()
    ax.axvline(0, color="black", lw=1, zorder=0)
    for y, r in enumerate(rows):
        color = VERDICT_COLORS.get(r["verdict"], "#868e96")
        if r["ci_low"] != "":
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, lw=2)
        marker = "o" if r["context"] == CONTEXT_LABELS["bare"] else "s"
        ax.plot(r["effect"], y, marker, color=color, ms=6)
    ax.set_yticks(
        range(len(lines)), [f"{t}: {r['with']} vs {w}" for (t, _, w), r in zip(lines, rows)]
    )
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylim(len(lines) - 0.5, -0.7)
    ax.set_xlabel(f"with the trick minus without it (points), with its {_interval_name(table)}")
    shapes = (("o", CONTEXT_LABELS["bare"]), ("s", CONTEXT_LABELS["full"]))
    _finish(fig, ax, table, "LeCun's slide, trick by trick", shapes, "verdict; context", target)


def _signed(x: float) -> str:
    """``x`` to 2 decimals with its sign, minus as U+2212: how Vega's ``format(x, '+.2f')``
    writes it, so the PNG and the `dvc plots` page print the same label."""
    return f"{x:+.2f}".replace("-", "\u2212")


def effect_label(row: dict) -> str:
    """The label beside one comparison (an ``effect_rows`` row) in the forest plot, the same in
    the PNG and on the page (.dvc/plots/forest.json), e.g. ``+1.20 [−0.40, +2.80] vs parent
    (init_weights)``: effect, the verdict's interval where there is one, and the rung it is
    compared with."""
    ci = f" [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]" if row["ci_low"] != "" else ""
    ref = f" ({row['reference']})" if row["comparison"] == "vs parent" else ""
    return f"{_signed(row['effect'])}{ci} {row['comparison']}{ref}"


def _interval_name(table: Table) -> str:
    return "Holm-adjusted interval" if table.correction == "holm" else f"{1 - table.alpha:.0%} CI"


def forest_plot(table: Table, rows: list[dict], target: Path) -> None:
    """Each rung's effect vs its parent and vs the baseline (``rows``), with the intervals that
    agree with the verdicts, around zero."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(r["variant"] for r in rows))
    fig = Figure(figsize=(9.5, 0.75 * len(names) + 1.6), dpi=120)
    ax = fig.subplots()
    ax.axvline(0, color="black", lw=1, zorder=0)  # behind the marks and their labels
    for r in rows:
        y = names.index(r["variant"]) + (-0.17 if r["comparison"] == "vs parent" else 0.17)
        color = VERDICT_COLORS.get(r["verdict"], "#868e96")
        if r["ci_low"] != "":
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, lw=2)
        ax.plot(r["effect"], y, "o" if r["comparison"] == "vs parent" else "s", color=color, ms=6)
        ax.annotate(
            effect_label(r),
            (r["effect"], y),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            fontsize=7,
            color=color,
            bbox=LABEL_BOX,  # the zero line passes behind a label, never through it
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.7)  # ladder order, top to bottom
    ax.set_xlabel(f"difference in mean test micro-F1 (points), with its {_interval_name(table)}")
    shapes = (("o", "vs parent"), ("s", "vs baseline"))
    what = f"Effect of each trick, {_interval_name(table)}"
    _finish(fig, ax, table, what, shapes, "verdict; comparison", target)


def _finish(fig, ax, table: Table, what: str, shapes, legend_title: str, target: Path) -> None:
    """An effects chart's legend (a colour per verdict, a marker per kind of comparison), its
    title (what, the seeds, the test, the correction, alpha), its grid, written."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLORS.items()
    ]
    handles += [Line2D([], [], color="#495057", marker=m, lw=0, label=label) for m, label in shapes]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        title=legend_title,
        title_fontsize=7,
    )
    ax.set_title(
        f"{what}, {table.min_seeds} seed(s); colour: verdict ({table.method_short}, "
        f"{table.adjusted}, alpha {table.alpha:.2g})",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    _save_png(fig, target)


def dot_plot(table: Table, target: Path) -> None:
    """Every seed's micro-F1 as a dot, each variant's mean with its 95% CI, the baseline's mean
    as a reference line and chance marked: in points, no bars, so one collapsed seed shows."""
    from matplotlib.figure import Figure

    names = list(table.variants)
    fig = Figure(figsize=(9.5, 0.55 * len(names) + 1.8), dpi=120)
    ax = fig.subplots()
    base = points(table.variants[table.baseline].mean)
    ax.axvline(base, ls="--", color="#495057", lw=1, zorder=0, label=f"baseline mean {base:.2f}")
    jitter = np.linspace(-0.18, 0.18, max(2, max(r.seeds for r in table.variants.values())))
    for y, name in enumerate(names):
        row = table.variants[name]
        c = row.vs.get("baseline")
        color = "#868e96" if c is None else VERDICT_COLORS.get(c.verdict, "#868e96")
        scores = np.array([points(v) for v in row.scores.values()])
        ax.scatter(scores, y + jitter[: len(scores)], s=22, color=color, alpha=0.7, lw=0, zorder=3)
        if row.ci_low is not None:
            ax.plot([points(row.ci_low), points(row.ci_high)], [y, y], color=color, lw=2.5)
        ax.plot(points(row.mean), y, "D", color=color, ms=7, mec="white")
        ax.annotate(
            f"{points(row.mean):.2f}",
            (points(row.mean), y),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=7,
            color=color,
            bbox=LABEL_BOX,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.7)
    left, right = ax.get_xlim()
    if table.chance is not None:
        chance = points(table.chance)
        if chance >= left - 0.02 * (right - left):
            ax.axvline(
                chance, ls=":", color="#c92a2a", lw=1, zorder=0, label=f"chance {chance:.1f}"
            )
        else:  # said in the legend, beside the others: no note over the title
            ax.plot(
                [],
                [],
                ls=":",
                color="#c92a2a",
                lw=1,
                label=f"chance {chance:.1f}: off the left edge",
            )
    ax.set_xlabel(
        "test micro-F1 (points): dots are seeds; diamond and bar, the mean and its 95% CI"
    )
    ax.set_title(
        f"micro-F1 by variant, {table.min_seeds} seed(s); colour: vs baseline "
        f"({table.method_short}, {table.adjusted}, alpha {table.alpha:.2g})",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    _save_png(fig, target)


def _save_png(fig, target: Path) -> None:
    """A Figure made without pyplot, written atomically."""
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
