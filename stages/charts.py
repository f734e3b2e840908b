"""The comparison's charts: the forest plot (PNG, and its data as DVC plot rows) and the bar chart.

Drawn with matplotlib's object API (``Figure``), not pyplot: no GUI backend, no global state,
and a faster import.  Numbers are in percentage points.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.io import atomic_path

if TYPE_CHECKING:
    from stages.compare import Table

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


def effect_rows(table: Table) -> list[dict]:
    """One row per comparison, ladder order, vs parent before vs baseline: the forest plot's
    data (points; an empty string where too few seeds gave no interval)."""
    rows = []
    for rung, (name, row) in enumerate(table.variants.items()):
        for label in ("parent", "baseline"):
            c = row.vs.get(label)
            if c is None:
                continue
            t = c.test
            rows.append(
                {
                    "variant": name,
                    "rung": rung,
                    "comparison": f"vs {label}",
                    "reference": c.reference,
                    "effect": round(100 * t.diff, 4),
                    "ci_low": round(100 * t.ci_low, 4) if t.ci_low is not None else "",
                    "ci_high": round(100 * t.ci_high, 4) if t.ci_high is not None else "",
                    "p_adjusted": c.p_adjusted if c.p_adjusted is not None else "",
                    "verdict": c.verdict,
                }
            )
    return rows


def forest_plot(table: Table, rows: list[dict], target: Path) -> None:
    """Each rung's effect vs its parent and vs the baseline (``rows``), 95% CIs, around zero."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(r["variant"] for r in rows))
    fig = Figure(figsize=(9.5, 0.75 * len(names) + 1.6), dpi=120)
    ax = fig.subplots()
    ax.axvline(0, color="black", lw=1)
    for r in rows:
        y = names.index(r["variant"]) + (-0.17 if r["comparison"] == "vs parent" else 0.17)
        color = VERDICT_COLORS.get(r["verdict"], "#868e96")
        if r["ci_low"] != "":
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, lw=2)
        ax.plot(r["effect"], y, "o" if r["comparison"] == "vs parent" else "s", color=color, ms=6)
        ci = f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if r["ci_low"] != "" else ""
        ref = f" ({r['reference']})" if r["comparison"] == "vs parent" else ""
        ax.annotate(
            f"{r['effect']:+.2f}{ci} {r['comparison']}{ref}",
            (r["effect"], y),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            fontsize=7,
            color=color,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.7)  # ladder order, top to bottom
    ax.set_xlabel("difference in mean test micro-F1 (points); o: vs parent rung, s: vs baseline")
    handles = [
        Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLORS.items()
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        title="verdict",
        title_fontsize=7,
    )
    ax.set_title(
        f"Effect of each trick, 95% CI, {table.min_seeds} seed(s); colour: verdict "
        f"({table.short_test}, {table.adjusted}, alpha {table.alpha:.2g})",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    _save_png(fig, target)


def bar_chart(table: Table, target: Path) -> None:
    """The blog's micro-F1 bar chart plus what it lacked: 95% CIs and the baseline line."""
    from matplotlib.figure import Figure

    rows = table.variants
    names = list(rows)
    means = np.array([rows[n].mean for n in names])
    err = np.array(
        [
            [
                m - (rows[n].ci_low if rows[n].ci_low is not None else m),
                (rows[n].ci_high if rows[n].ci_high is not None else m) - m,
            ]
            for n, m in zip(names, means)
        ]
    ).T
    colors = [
        "#999999"
        if n == table.baseline
        else VERDICT_COLORS.get(
            rows[n].vs["baseline"].verdict if "baseline" in rows[n].vs else None,
            VERDICT_COLORS["no detectable effect"],
        )
        for n in names
    ]
    fig = Figure(figsize=(9, 4.8), dpi=120)
    ax = fig.subplots()
    ax.bar(names, means, yerr=err, capsize=5, color=colors)
    base = rows[table.baseline].mean
    ax.axhline(base, ls="--", color="black", lw=1, label=f"baseline {base:.4f}")
    low = min(means.min(), np.nanmin(np.where(err[0] > 0, means - err[0], means)))
    high = max(means.max(), np.nanmax(means + err[1]))
    pad = max(0.01, (high - low) * 0.25)
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    bottom = ax.get_ylim()[0]
    for x, m in enumerate(means):  # inside the bar's foot, clear of the error bar
        ax.text(
            x,
            bottom + (m - bottom) * 0.04,
            f"{m:.4f}",
            ha="center",
            va="bottom",
            fontsize=8,
            color="white",
            fontweight="bold",
        )
    ax.set_ylabel("test micro-F1 (accuracy)")
    ax.set_title(
        f"micro-F1 by variant: mean over {table.min_seeds} seed(s), 95% CI; green/red: "
        f"differs from baseline ({table.short_test}, {table.adjusted}, alpha {table.alpha:.2g})",
        fontsize=9,
    )
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, target)


def _save_png(fig, target: Path) -> None:
    """A Figure made without pyplot, written atomically."""
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
