"""Stage `compare`: does each trick help?  Effect sizes with intervals, over seeds.

Inputs:  results/<variant>/report.json (per-seed scores, from `evaluate@<variant>`) and
         results/<variant>/live/plots/metrics/test/*.tsv (per-epoch curves, from `train`).
Params:  ``variants`` (their names and ladder order) and ``compare`` (baseline, alpha,
         test, correction, parents).
Outputs (in ``--out``, i.e. compare/):
  comparison.json   per variant: mean and sample std of micro-F1 over seeds and its 95% CI;
                    against the baseline and against the parent rung: the difference in
                    means with its 95% CI (Welch-Satterthwaite), Welch's p-value, the
                    p-value adjusted over the family of comparisons (Holm), the minimum
                    detectable effect (80% power) and the verdict (helps / hurts / no
                    detectable effect, from the adjusted p at alpha).
  comparison.md     for people: the answer first (which tricks help, hurt, or could not be
                    told apart, and how large an effect could have gone unseen), then the table.
  summary.json      DVC metrics: ``micro_f1.<variant>`` (mean over seeds) for every variant,
                    names unique across metrics files, so `dvc exp show` shows them as
                    short columns (``--drop '.*' --keep 'micro_f1[.]'``).
  effects.png       forest plot: each rung's effect vs its parent and vs the baseline, 95% CIs.
  effects.csv       the same as DVC plot data (template .dvc/plots/forest.json).
  micro_f1.png      the blog's bar chart, with 95% CI error bars and the baseline dashed.
  curves.csv        test accuracy and loss per epoch (mean over seeds), every variant.

A variant added to params.yaml appears in all of them with no code change.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special

from stages import params
from stages.runtime import UserError, atomic_path, read_json, run_main, write_csv, write_json, write_text

log = logging.getLogger("cifar10_tricks.compare")


POWER = 0.80  # the power at which the minimum detectable effect is stated
HALF_POINT = 0.005  # in [0, 1] units of micro-F1


@dataclass(frozen=True)
class Test:
    """One comparison of a variant with a reference, over seeds (micro-F1 in [0, 1] units)."""

    diff: float  # mean of the variant minus mean of the reference
    ci_low: float | None  # 95% CI of the difference (Welch-Satterthwaite); None: too few seeds
    ci_high: float | None
    p: float | None  # Welch's two-sided p-value; None: too few seeds
    se: float | None  # standard error of the difference
    df: float | None  # Welch-Satterthwaite degrees of freedom


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float | None, float | None]:
    """(mean, sample std, CI low, CI high) with Student's t; no CI from a single seed."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, 0.0, None, None
    std = float(a.std(ddof=1))
    half = float(special.stdtrit(len(a) - 1, 0.5 + level / 2)) * std / math.sqrt(len(a))
    # micro-F1 lives in [0, 1]; with few seeds the t-interval can reach past it.
    return mean, std, max(0.0, mean - half), min(1.0, mean + half)


def welch(a: list[float], b: list[float]) -> Test:
    """Welch's t-test of mean(a) vs mean(b) over seeds, with the 95% CI of the difference.

    Unequal variances allowed: se^2 = va/na + vb/nb, Welch-Satterthwaite degrees of freedom,
    p = 2 P(T_df > |diff| / se), CI diff +- t(0.975, df) se: scipy.stats.ttest_ind's numbers
    (tested against it), from scipy.special's t distribution, which imports in 0.3 s where
    scipy.stats takes 1.2 s of this stage's start-up on a 2-core CPU.
    """
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return Test(diff, None, None, None, None, None)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        # Every seed scored the same: the test is undefined; equal means are no effect.
        return Test(diff, diff, diff, 1.0 if diff == 0 else 0.0, 0.0, float(len(a) + len(b) - 2))
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    p = float(2 * special.stdtr(df, -abs(diff) / se))
    half = float(special.stdtrit(df, 0.975)) * se
    return Test(diff, diff - half, diff + half, p, se, df)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p-values times (m - k + 1),
    kept monotone and capped at 1.  It controls the family-wise error rate at alpha."""
    m = len(pvalues)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def power(effect: float, se: float, df: float, level: float) -> float:
    """Power of a two-sided t-test at ``level`` to detect a true difference ``effect``
    (noncentral t with noncentrality effect / se)."""
    crit = special.stdtrit(df, 1 - level / 2)
    ncp = effect / se
    value = float(1 - special.nctdtr(df, ncp, crit) + special.nctdtr(df, ncp, -crit))
    if not math.isfinite(value):  # scipy's noncentral t gives up far in its tails
        return 1.0 if ncp > crit else 0.0
    return value


def detectable(se: float | None, df: float | None, level: float, target: float = POWER) -> float | None:
    """The smallest true difference the test detects with probability ``target`` (noncentral
    t), or None: too few seeds to test, or more than the whole [0, 1] scale."""
    if not se or not df:
        return None
    high = se * max(1.0, float(special.stdtrit(df, 1 - level / 2)))
    while power(high, se, df, level) < target:
        high *= 2
        if high > 2.0:  # no difference of micro-F1 is that large
            return None
    low = 0.0
    while high - low > 1e-9:  # power rises with the effect: bisect to 1e-7 points
        mid = (low + high) / 2
        low, high = (mid, high) if power(mid, se, df, level) < target else (low, mid)
    return high


def seeds_needed(sd: float, effect: float, level: float, target: float = POWER, cap: int = 1000) -> int | None:
    """Seeds per variant for ``effect`` to be detected with probability ``target``, if both
    variants spread like ``sd``; None when more than ``cap``."""
    def enough(n: int) -> bool:
        mde = detectable(sd * math.sqrt(2 / n), 2 * n - 2.0, level, target)
        return mde is not None and mde <= effect

    if sd == 0:
        return 2
    if not enough(cap):
        return None
    low, high = 1, cap  # the detectable effect shrinks as seeds grow: binary search
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def parent_of(names: list[str], name: str, parents: dict[str, str]) -> str | None:
    if name in parents:
        return parents[name]
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def compare(scores: dict[str, list[float]], cp: params.CompareParams) -> dict:
    """The comparison table, variants in ladder order.

    Every distinct (variant, reference) pair is one test of the family that the correction
    covers (a rung whose parent is the baseline counts once); verdicts come from the
    adjusted p-values, and the minimum detectable effect is stated at the strictest level
    the correction applies (alpha / family size for Holm).
    """
    names = list(scores)
    refs = {name: {"baseline": cp.baseline, "parent": parent_of(names, name, cp.parents)} for name in names}
    pairs = list(dict.fromkeys((name, ref) for name in names for ref in refs[name].values()
                               if ref is not None and ref != name))
    tests = {pair: welch(scores[pair[0]], scores[pair[1]]) for pair in pairs}
    tested = [pair for pair in pairs if tests[pair].p is not None]
    raw = [tests[pair].p for pair in tested]
    adjusted = dict(zip(tested, holm(raw) if cp.correction == "holm" else raw))
    level = cp.alpha / len(tested) if cp.correction == "holm" and tested else cp.alpha
    mdes = {pair: detectable(t.se, t.df, level) for pair, t in tests.items()}
    table = {}
    for name in names:
        mean, std, low, high = mean_ci(scores[name])
        row = {"micro_f1": mean, "micro_f1_std": std, "ci95_low": low, "ci95_high": high,
               "seeds": len(scores[name])}
        for label, ref in refs[name].items():
            if ref is None or ref == name:
                continue
            t, p_adj = tests[(name, ref)], adjusted.get((name, ref))
            if p_adj is None:
                verdict = "needs >= 2 seeds per variant"
            elif p_adj < cp.alpha:
                verdict = "helps" if t.diff > 0 else "hurts"
            else:
                verdict = "no detectable effect"
            row.update({f"vs_{label}": ref, f"diff_vs_{label}": t.diff, f"ci95_low_vs_{label}": t.ci_low,
                        f"ci95_high_vs_{label}": t.ci_high, f"p_vs_{label}": t.p, f"p_adj_vs_{label}": p_adj,
                        f"mde_vs_{label}": mdes[(name, ref)], f"verdict_vs_{label}": verdict})
        table[name] = row
    # The spread for planning: the median of the variants' seed-to-seed sds, so that one
    # unstable variant (a seed stuck at chance, say) does not set it for all of them.
    sds = [table[n]["micro_f1_std"] for n in names if table[n]["seeds"] > 1]
    typical = float(np.median(sds)) if sds else None
    return {"test": "Welch's t-test over seeds (two-sided)", "alpha": cp.alpha, "baseline": cp.baseline,
            "correction": cp.correction, "comparisons": len(tested), "mde_level": level, "power": POWER,
            "typical_sd": typical,
            "seeds_for_half_point": seeds_needed(typical, HALF_POINT, level) if typical is not None else None,
            "variants": table}


def read_scores(results: Path, names: list[str]) -> dict[str, list[float]]:
    scores = {}
    for name in names:
        report = read_json(results / name / "report.json", f"evaluate@{name}")
        scores[name] = [report["per_seed"][str(s)]["micro_f1"] for s in report["seeds"]]
    return scores


def read_curves(results: Path, names: list[str]) -> list[dict]:
    """Rows of (variant, epoch, test_acc, test_loss): DVCLive's per-epoch means over seeds."""
    rows = []
    for name in names:
        series = {}
        for metric in ("acc", "loss"):
            path = results / name / "live" / "plots" / "metrics" / "test" / f"{metric}.tsv"
            if not path.exists():
                raise UserError(f"{path} does not exist; it is made by `train@{name}`: run `dvc repro`.")
            with open(path, newline="") as f:
                series[metric] = [float(r[metric]) for r in csv.DictReader(f, delimiter="\t")]
        for epoch, (acc, loss) in enumerate(zip(series["acc"], series["loss"]), start=1):
            rows.append({"variant": name, "epoch": epoch, "test_acc": acc, "test_loss": loss})
    return rows


def _pts(x: float | None, signed: bool = True) -> str:
    """[0, 1] units as percentage points."""
    return "n/a" if x is None else f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _effect(row: dict, label: str) -> str:
    """'+1.23 [+0.40, +2.06] vs ref': a difference with its 95% CI, in points."""
    ci = (f" [{_pts(row[f'ci95_low_vs_{label}'])}, {_pts(row[f'ci95_high_vs_{label}'])}]"
          if row[f"ci95_low_vs_{label}"] is not None else "")
    return f"{_pts(row[f'diff_vs_{label}'])}{ci} vs {row[f'vs_{label}']}"


def answer(table: dict) -> list[str]:
    """The lead of comparison.md: each rung's trick against the rung it builds on."""
    groups: dict[str, list[str]] = {"helps": [], "hurts": [], "no detectable effect": []}
    for name, row in table["variants"].items():
        if "diff_vs_parent" not in row or row["verdict_vs_parent"] not in groups:
            continue
        text = f"{name} ({_effect(row, 'parent')}"
        if row["verdict_vs_parent"] == "no detectable effect":
            text += f"; an effect under {_pts(row['mde_vs_parent'], False)} points could go unseen"
        groups[row["verdict_vs_parent"]].append(text + ")")
    correction = ("Holm-adjusted over the table's " if table["correction"] == "holm" else "unadjusted, ")
    seeds = min((r["seeds"] for r in table["variants"].values()), default=0)
    lines = ["## Does each trick help?", "",
             f"Each rung against the rung it builds on: difference in mean test micro-F1 in points with its "
             f"95% CI, over {seeds} seeds; Welch's t-test, {correction}"
             f"{table['comparisons']} comparisons, alpha {table['alpha']}.",
             ""]
    for verdict, title in (("helps", "Helps"), ("hurts", "Hurts"), ("no detectable effect", "Could not be told apart"),):
        lines.append(f"- **{title}:** " + ("; ".join(groups[verdict]) if groups[verdict] else "none") + ".")
    if table["typical_sd"] is not None:
        need = table["seeds_for_half_point"]
        lines += ["", f"Seed-to-seed spread: sd {_pts(table['typical_sd'], False)} points (the median over variants). "
                  f"At that spread a half-point effect needs "
                  + (f"about {need} seeds per variant" if need else "more than 1,000 seeds per variant")
                  + f" to be detected with {table['power']:.0%} power at the level used here "
                  f"({table['mde_level']:.3g}); `dvc exp run -S 'train.seeds=[...]'` sets the seeds."]
    return lines


def markdown(table: dict) -> str:
    """The comparison for people: the answer first, then the full table (Markdown, points)."""
    def test(row, label):
        if f"diff_vs_{label}" not in row:
            return "—"
        p_adj = row[f"p_adj_vs_{label}"]
        adj = f", adj. {_p(p_adj)}" if table["correction"] != "none" and p_adj is not None else ""
        mde = (f", MDE {_pts(row[f'mde_vs_{label}'], False)}"
               if row[f"verdict_vs_{label}"] == "no detectable effect" and row[f"mde_vs_{label}"] is not None else "")
        return f"{_effect(row, label)} (p={_p(row[f'p_vs_{label}'])}{adj}, {row[f'verdict_vs_{label}']}{mde})"

    def ci(row):
        return "n/a" if row["ci95_low"] is None else f"{100 * row['ci95_low']:.2f} – {100 * row['ci95_high']:.2f}"

    lines = answer(table) + [
        "", "## All comparisons", "",
        f"Test micro-F1 (%), mean ± sd over seeds and the 95% CI of the mean; differences in points with "
        f"their 95% CI; {table['test']}, p-values {'Holm-adjusted' if table['correction'] == 'holm' else 'unadjusted'}"
        f" for the verdict at alpha {table['alpha']}; MDE: the difference this run would detect with "
        f"{table['power']:.0%} power.", "",
        "| variant | micro-F1 | 95% CI | vs baseline | vs parent rung |", "| --- | --- | --- | --- | --- |"]
    for name, row in table["variants"].items():
        lines.append(f"| {name} | {100 * row['micro_f1']:.2f} ± {100 * row['micro_f1_std']:.2f} | {ci(row)} "
                     f"| {test(row, 'baseline')} | {test(row, 'parent')} |")
    return "\n".join(lines) + "\n"


VERDICT_COLORS = {"helps": "#2b8a3e", "hurts": "#c92a2a", "no detectable effect": "#4c6ef5"}
# The forest plot's data, one row per comparison (effect_rows), as effects.csv's columns.
EFFECT_FIELDS = ("variant", "rung", "comparison", "reference", "effect", "ci_low", "ci_high", "p_adjusted", "verdict")


def effect_rows(table: dict) -> list[dict]:
    """One row per comparison, ladder order: the forest plot's data (points)."""
    rows = []
    for rung, (name, row) in enumerate(table["variants"].items()):
        for label in ("parent", "baseline"):
            if f"diff_vs_{label}" not in row:
                continue
            low, high = row[f"ci95_low_vs_{label}"], row[f"ci95_high_vs_{label}"]
            rows.append({"variant": name, "rung": rung, "comparison": f"vs {label}", "reference": row[f"vs_{label}"],
                         "effect": round(100 * row[f"diff_vs_{label}"], 4),
                         "ci_low": round(100 * low, 4) if low is not None else "",
                         "ci_high": round(100 * high, 4) if high is not None else "",
                         "p_adjusted": row[f"p_adj_vs_{label}"] if row[f"p_adj_vs_{label}"] is not None else "",
                         "verdict": row[f"verdict_vs_{label}"]})
    return rows


def forest_plot(table: dict, target: Path) -> None:
    """Each rung's effect vs its parent and vs the baseline, with 95% CIs, around zero."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = effect_rows(table)
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
        ax.annotate(f"{r['effect']:+.2f}{ci} {r['comparison']}{ref}", (r["effect"], y),
                    textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7, color=color)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.7)  # ladder order, top to bottom
    ax.set_xlabel("difference in mean test micro-F1 (points); o: vs parent rung, s: vs baseline")
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="verdict",
              title_fontsize=7)
    seeds = min(r["seeds"] for r in table["variants"].values())
    corr = "Holm-adjusted" if table["correction"] == "holm" else "unadjusted"
    ax.set_title(f"Effect of each trick, 95% CI, {seeds} seed(s); colour: verdict (Welch, {corr}, "
                 f"alpha {table['alpha']:.2g})", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _save_png(fig, target)


def _save_png(fig, target: Path) -> None:
    """A matplotlib Figure made without pyplot (no GUI backend, no global state), atomically."""
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")


def bar_chart(table: dict, target: Path) -> None:
    """The blog's micro-F1 bar chart plus what it lacked: 95% CIs and the baseline line."""
    from matplotlib.figure import Figure

    rows = table["variants"]
    names = list(rows)
    means = np.array([rows[n]["micro_f1"] for n in names])
    err = np.array([[m - (rows[n]["ci95_low"] if rows[n]["ci95_low"] is not None else m),
                     (rows[n]["ci95_high"] if rows[n]["ci95_high"] is not None else m) - m]
                    for n, m in zip(names, means)]).T
    colors = ["#999999" if n == table["baseline"] else
              VERDICT_COLORS.get(rows[n].get("verdict_vs_baseline"), VERDICT_COLORS["no detectable effect"])
              for n in names]
    fig = Figure(figsize=(9, 4.8), dpi=120)
    ax = fig.subplots()
    ax.bar(names, means, yerr=err, capsize=5, color=colors)
    base = rows[table["baseline"]]["micro_f1"]
    ax.axhline(base, ls="--", color="black", lw=1, label=f"baseline {base:.4f}")
    low = min(means.min(), np.nanmin(np.where(err[0] > 0, means - err[0], means)))
    high = max(means.max(), np.nanmax(means + err[1]))
    pad = max(0.01, (high - low) * 0.25)
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    bottom = ax.get_ylim()[0]
    for x, m in enumerate(means):  # inside the bar's foot, clear of the error bar
        ax.text(x, bottom + (m - bottom) * 0.04, f"{m:.4f}", ha="center", va="bottom", fontsize=8,
                color="white", fontweight="bold")
    seeds = min(r["seeds"] for r in rows.values())
    ax.set_ylabel("test micro-F1 (accuracy)")
    ax.set_title(f"micro-F1 by variant: mean over {seeds} seed(s), 95% CI; green/red: differs from "
                 f"baseline (Welch, {table['correction']}, alpha {table['alpha']:.2g})", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", type=Path, required=True, help="folder of results/<variant>/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the comparison files")
    args = parser.parse_args(argv)

    p = params.load(args.params)
    names = list(p.variants)
    table = compare(read_scores(args.results, names), p.compare)
    # With a single variant there is nothing to compare, but the plot's file still exists.
    write_csv(args.out / "effects.csv", list(EFFECT_FIELDS), [[r[f] for f in EFFECT_FIELDS] for r in effect_rows(table)])
    curves = read_curves(args.results, names)
    write_csv(args.out / "curves.csv", list(curves[0]), [list(r.values()) for r in curves])
    bar_chart(table, args.out / "micro_f1.png")
    forest_plot(table, args.out / "effects.png")
    write_json(args.out / "comparison.json", table)
    write_json(args.out / "summary.json",
               {"micro_f1": {n: r["micro_f1"] for n, r in table["variants"].items()}})
    text = markdown(table)
    write_text(args.out / "comparison.md", text)
    log.info("%s", text)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


if __name__ == "__main__":
    run_main(main)
