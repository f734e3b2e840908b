"""The ``cifar10-tricks`` command, installed with the project: what is easier said to DVC by a
command than typed.

    cifar10-tricks study slide [--print] [dvc exp run options ...]
    cifar10-tricks diff REV [REV ...] [--json | --md] [-o chart.png]

``study NAME`` runs ``dvc exp run -S 'study=[...]'`` with the variants of ``studies.NAME`` in
params.yaml (printing the command first), and any further options passed on to ``dvc exp run``
(``--queue``, ``-n slide``, ``-S train.seeds=[0-2]``, ...).  The experiment's params say the
whole list, so `dvc params diff` and `dvc exp show` show exactly what ran; only the variants it
adds train, as a new block of seeds does.

``diff REV`` compares the workspace's study with the one ``REV`` committed (several REVs: each
with the first), seed by seed where the seeds can be paired, from git alone
(:mod:`cifar10_tricks.revisions`); a table within 120 columns, or ``--json``, or ``--md`` for a
pull request; with several REVs ``-o`` draws each variant's effect against the knob that
changed (a sweep's dose-response).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from cifar10_tricks import params
from cifar10_tricks.errors import UserError, one_line


def study_command(p: params.Params, name: str, extra: list[str]) -> list[str]:
    """The `dvc exp run` that trains and compares ``studies.<name>``."""
    if name not in p.studies:
        raise UserError(
            f"no study {name!r} in params.yaml; known: {', '.join(p.studies)} (under `studies`)."
        )
    return ["dvc", "exp", "run", "-S", f"study=[{','.join(p.studies[name])}]", *extra]


def _pts(x: float | None) -> str:
    return "    —" if x is None else f"{100 * x:+6.2f}"


def _row(c) -> dict:
    return {
        "variant": c.variant,
        "diff": c.diff,
        "ci_low": c.interval[0] if c.interval else None,
        "ci_high": c.interval[1] if c.interval else None,
        "p": c.p,
        "p_adjusted": c.p_adjusted,
        "mde": c.mde,
        "verdict": c.verdict,
        "seeds": c.seeds,
        "paired": c.paired,
        "why_unpaired": c.why_unpaired,
    }


def _knob_text(knobs: dict, width: int = 120) -> str:
    shown = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in knobs.items()) or "none"
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def diff_text(result: dict) -> str:
    """The diff for a terminal: within 120 columns."""
    import textwrap

    lines = [
        f"{result['other']} against {result['base']}: difference in mean test micro-F1 (points), "
        "its Holm-adjusted interval, the verdict (Holm over the variants that changed, alpha "
        f"{result['alpha']}), the smallest effect it could detect (80% power), the seeds",
        "params changed: " + _knob_text(result["knobs"]),
        "",
    ]
    lines = [w for line in lines for w in (textwrap.wrap(line, 120) or [""])]
    same = [c for c in result["changes"] if c.verdict == "identical on every seed"]
    for c in result["changes"]:
        if c in same:
            continue
        lo, hi = c.interval or (None, None)
        mde = "—" if c.mde is None else f"{100 * c.mde:.2f}"
        how = "paired" if c.paired else "Welch"
        lines.append(
            f"{c.variant[:24]:<24} {_pts(c.diff)} [{_pts(lo)}, {_pts(hi)}]  {c.verdict:<23} "
            f"MDE {mde:>5}  {c.seeds} seeds, {how}"
        )
        if c.why_unpaired:
            lines += textwrap.wrap(
                f"not paired: {c.why_unpaired}", 120, initial_indent="  ", subsequent_indent="  "
            )
    if same:
        lines.append(
            f"identical on every seed: {len(same)} variant(s): "
            + ", ".join(c.variant for c in same)
        )
    for key, where in (("only_base", result["base"]), ("only_other", result["other"])):
        if result[key]:
            lines.append(f"only in {where}: " + ", ".join(result[key]))
    return "\n".join(
        textwrap.shorten(x, 120, placeholder="…") if len(x) > 120 else x for x in lines
    )


def diff_markdown(result: dict) -> str:
    """The diff as Markdown, for a pull-request comment."""
    lines = [
        f"**{result['other']} against {result['base']}** (params changed: "
        f"{_knob_text(result['knobs'], 400)})",
        "",
        "| variant | difference (points) | Holm-adjusted interval | verdict | MDE | seeds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in result["changes"]:
        lo, hi = c.interval or (None, None)
        mde = "—" if c.mde is None else f"{100 * c.mde:.2f}"
        how = "paired" if c.paired else f"Welch ({c.why_unpaired})"
        lines.append(
            f"| {c.variant} | {_pts(c.diff).strip()} | [{_pts(lo).strip()}, {_pts(hi).strip()}] "
            f"| {c.verdict} | {mde} | {c.seeds}, {how} |"
        )
    for key, where in (("only_base", result["base"]), ("only_other", result["other"])):
        if result[key]:
            lines += ["", f"Only in {where}: " + ", ".join(result[key]) + "."]
    return "\n".join(lines) + "\n"


def sweep_chart(results: list[dict], target: Path) -> None:
    """Each changed variant's effect (with its interval) against the one knob each experiment
    changed: a dose-response, one line per variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    ax = fig.subplots()
    ax.axhline(0, color="black", lw=1)
    knob = None
    lines: dict[str, list] = {}
    for r in results:
        if len(r["knobs"]) != 1:
            raise UserError(
                f"{r['other']} changed {len(r['knobs'])} params against {r['base']}, not one: "
                "a dose-response needs a one-knob sweep."
            )
        ((key, (_, value)),) = r["knobs"].items()
        knob = knob or key
        for c in r["changes"]:
            if c.interval:
                lines.setdefault(c.variant, []).append((value, c.diff, *c.interval))
    for variant, points in lines.items():
        points.sort()
        x = [p[0] for p in points]
        ax.errorbar(
            x,
            [100 * p[1] for p in points],
            yerr=[[100 * (p[1] - p[2]) for p in points], [100 * (p[3] - p[1]) for p in points]],
            marker="o",
            capsize=3,
            label=variant,
        )
    ax.set_xlabel(knob or "the knob swept")
    ax.set_ylabel("effect on test micro-F1 (points), Holm-adjusted interval")
    ax.set_title(f"Each experiment against {results[0]['base']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")


def run_diff(args) -> None:
    from cifar10_tricks import revisions

    root = Path(".").resolve()
    if len(args.revs) == 1:
        pairs = [(args.revs[0], None)]
    else:
        pairs = [(args.revs[0], rev) for rev in args.revs[1:]]
    base = revisions.read_side(root, pairs[0][0])
    alpha = float(((base.params.get("compare") or {}).get("alpha")) or 0.05)
    results = [revisions.diff(base, revisions.read_side(root, rev), alpha) for _, rev in pairs]
    if args.json:
        out = [
            {
                **{k: v for k, v in r.items() if k != "changes"},
                "changes": [_row(c) for c in r["changes"]],
            }
            for r in results
        ]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1, default=str))
    elif args.md:
        print("\n".join(diff_markdown(r) for r in results))
    else:
        print("\n\n".join(diff_text(r) for r in results))
    if args.o:
        sweep_chart(results, Path(args.o))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar10-tricks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "diff",
        help="is the difference between two revisions real? a paired test per variant, from git",
        description="Compare the study each REV committed with the workspace's (one REV) or "
        "with the first REV's (several), seed by seed where they pair, Holm over the variants "
        "that changed.",
    )
    compare.add_argument(
        "revs", nargs="+", metavar="REV", help="a branch, commit, tag or experiment"
    )
    form = compare.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="for scripts")
    form.add_argument("--md", action="store_true", help="Markdown, for a pull-request comment")
    compare.add_argument(
        "-o", metavar="PNG", help="several REVs: chart each effect against the knob"
    )
    study = commands.add_parser(
        "study",
        help="train and compare a named study of params.yaml (dvc exp run -S study=[...])",
        description="Run `dvc exp run -S 'study=[...]'` with the variants of studies.NAME; "
        "further options go to dvc exp run.",
    )
    study.add_argument("name", help="a study under `studies` in params.yaml: blog, slide, ...")
    study.add_argument("--params", default="params.yaml", help="the params file (params.yaml)")
    study.add_argument("--print", action="store_true", help="print the command, run nothing")
    args, extra = parser.parse_known_args(argv)
    if args.command == "diff":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return run_diff(args)
    command = study_command(params.load(args.params), args.name, extra)
    print(shlex.join(command), file=sys.stdout if args.print else sys.stderr, flush=True)
    if args.print:
        return
    # DVC as this interpreter runs it: the project's environment, whatever PATH says.
    raise SystemExit(subprocess.call([sys.executable, "-m", *command]))


def entry() -> None:
    """The console script: expected failures as one ``error:`` line, exit 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    entry()
