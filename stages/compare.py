"""Stage `compare`: every variant's micro-F1 side by side, with its uncertainty.

Inputs:  results/<variant>/report.json (per-seed scores, from `evaluate@<variant>`) and
         results/<variant>/live/plots/metrics/test/*.tsv (per-epoch curves, from `train`).
Params:  ``variants`` (their names and ladder order) and ``compare`` (baseline, alpha,
         test, parents).
Outputs (in ``--out``, i.e. compare/):
  comparison.json   per variant: mean and sample std of micro-F1 over seeds, its 95% CI,
                    the difference to the baseline and to the parent rung, each with a
                    Welch's t-test p-value and a verdict (helps / hurts / no detectable
                    effect at alpha).
  comparison.md     the same table for people (Markdown).
  summary.json      DVC metrics: ``micro_f1.<variant>`` (mean over seeds) for every variant,
                    names unique across metrics files, so `dvc exp show` shows them as
                    short columns (``--drop '.*' --keep 'micro_f1[.]'``).
  micro_f1.png      the blog's bar chart, with 95% CI error bars and the baseline dashed.
  micro_f1.csv      the same numbers as DVC bar-plot data.
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
from scipy import stats as sps

from stages import params
from stages.runtime import UserError, atomic_path, read_json, run_main, write_csv, write_json, write_text

log = logging.getLogger("cifar10_tricks.compare")


@dataclass(frozen=True)
class Test:
    diff: float  # mean micro-F1 of the variant minus that of the reference, in [0, 1] units
    p: float | None  # None: too few seeds for a test
    verdict: str


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float | None, float | None]:
    """(mean, sample std, CI low, CI high) with Student's t; no CI from a single seed."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, 0.0, None, None
    std = float(a.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, len(a) - 1)) * std / math.sqrt(len(a))
    # micro-F1 lives in [0, 1]; with few seeds the t-interval can reach past it.
    return mean, std, max(0.0, mean - half), min(1.0, mean + half)


def welch(a: list[float], b: list[float], alpha: float) -> Test:
    """Welch's t-test of mean(a) vs mean(b) over seeds (unequal variances allowed)."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return Test(diff, None, "needs >= 2 seeds per variant")
    if np.var(a) == 0 and np.var(b) == 0:
        # Every seed scored the same: the test is undefined; equal means are no effect.
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    if p < alpha:
        return Test(diff, p, "helps" if diff > 0 else "hurts")
    return Test(diff, p, "no detectable effect")


def parent_of(names: list[str], name: str, parents: dict[str, str]) -> str | None:
    if name in parents:
        return parents[name]
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def compare(scores: dict[str, list[float]], cp: params.CompareParams) -> dict:
    """The comparison table, variants in ladder order."""
    names = list(scores)
    table = {}
    for name in names:
        mean, std, low, high = mean_ci(scores[name])
        row = {"micro_f1": mean, "micro_f1_std": std, "ci95_low": low, "ci95_high": high,
               "seeds": len(scores[name])}
        refs = {"baseline": cp.baseline, "parent": parent_of(names, name, cp.parents)}
        for label, ref in refs.items():
            if ref is None or ref == name:
                continue
            t = welch(scores[name], scores[ref], cp.alpha)
            row.update({f"vs_{label}": ref, f"diff_vs_{label}": t.diff, f"p_vs_{label}": t.p,
                        f"verdict_vs_{label}": t.verdict})
        table[name] = row
    return {"test": "Welch's t-test over seeds (two-sided)", "alpha": cp.alpha, "baseline": cp.baseline,
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


def markdown(table: dict) -> str:
    """The comparison as a Markdown table, differences in points (percentage points)."""
    def test(row, label):
        if f"diff_vs_{label}" not in row:
            return "—"
        return (f"{100 * row[f'diff_vs_{label}']:+.2f} vs {row[f'vs_{label}']} "
                f"(p={_p(row[f'p_vs_{label}'])}, {row[f'verdict_vs_{label}']})")

    def ci(row):
        return "n/a" if row["ci95_low"] is None else f"{100 * row['ci95_low']:.2f} – {100 * row['ci95_high']:.2f}"

    lines = [f"Test micro-F1 (%), mean ± sd over seeds; {table['test']}, alpha {table['alpha']}.", "",
             "| variant | micro-F1 | 95% CI | vs baseline | vs parent rung |", "| --- | --- | --- | --- | --- |"]
    for name, row in table["variants"].items():
        lines.append(f"| {name} | {100 * row['micro_f1']:.2f} ± {100 * row['micro_f1_std']:.2f} | {ci(row)} "
                     f"| {test(row, 'baseline')} | {test(row, 'parent')} |")
    return "\n".join(lines) + "\n"


def bar_chart(table: dict, target: Path) -> None:
    """The blog's micro-F1 bar chart plus what it lacked: 95% CIs and the baseline line."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    rows = table["variants"]
    names = list(rows)
    means = np.array([rows[n]["micro_f1"] for n in names])
    err = np.array([[m - (rows[n]["ci95_low"] if rows[n]["ci95_low"] is not None else m),
                     (rows[n]["ci95_high"] if rows[n]["ci95_high"] is not None else m) - m]
                    for n, m in zip(names, means)]).T
    colors = ["#999999" if n == table["baseline"] else
              {"helps": "#2b8a3e", "hurts": "#c92a2a"}.get(rows[n].get("verdict_vs_baseline"), "#4c6ef5")
              for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
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
    ax.set_title(f"micro-F1 by variant: mean over {seeds} seed(s), 95% CI; "
                 f"green/red: differs from baseline (Welch, alpha {table['alpha']:.2g})", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", type=Path, required=True, help="folder of results/<variant>/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the comparison files")
    args = parser.parse_args(argv)

    p = params.load(args.params)
    names = list(p.variants)
    table = compare(read_scores(args.results, names), p.compare)
    write_csv(args.out / "micro_f1.csv", ["variant", "micro_f1", "micro_f1_std"],
              [(n, r["micro_f1"], r["micro_f1_std"]) for n, r in table["variants"].items()])
    curves = read_curves(args.results, names)
    write_csv(args.out / "curves.csv", list(curves[0]), [list(r.values()) for r in curves])
    bar_chart(table, args.out / "micro_f1.png")
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
