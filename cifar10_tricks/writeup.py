"""comparison.md, the comparison for people: the answer first, then every comparison, then every
seed, in percentage points."""

from __future__ import annotations

from cifar10_tricks import provenance
from cifar10_tricks.comparison import Comparison, Row, Table, points


def _pts(x: float | None, signed: bool = True) -> str:
    """[0, 1] units as percentage points, two decimals ("—" for none)."""
    return "—" if x is None else f"{points(x):+.2f}" if signed else f"{points(x):.2f}"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


IDENTICAL = "identical on every seed"


def _unseen(c: Comparison) -> str:
    """How large an effect this comparison could have missed, in words."""
    if c.mde == 0:  # no spread: the two scored exactly alike on every seed, or moved alike
        return IDENTICAL if c.result.diff == 0 else "the same difference on every seed"
    if c.mde is not None:
        return f"an effect under {_pts(c.mde, False)} points could go unseen"
    return "the seeds spread so widely that even an effect of more than 200 points could go unseen"


def _interval(low: float | None, high: float | None) -> str:
    return f" [{_pts(low)}, {_pts(high)}]" if low is not None else ""


def _effect(c: Comparison, adjusted: bool = False) -> str:
    """'+1.23 [+0.40, +2.06] vs ref': a difference with its 95% CI, or with ``adjusted`` the
    interval at the level its verdict was tested at (the one that agrees with the verdict)."""
    t = c.result
    ci = _interval(*c.adjusted) if adjusted and c.adjusted else _interval(t.ci_low, t.ci_high)
    return f"{_pts(t.diff)}{ci} vs {c.reference}"


def interval_words(table: Table) -> str:
    """What the interval beside a verdict is, in words."""
    if table.correction == "holm":
        return (
            "its Holm-adjusted interval (at the level Holm tested it at: it excludes zero exactly "
            "where the verdict is helps or hurts; the table below has the 95% CIs)"
        )
    return f"its {1 - table.alpha:.0%} interval (unadjusted, at the verdicts' alpha)"


def answer(table: Table) -> list[str]:
    """The lead of comparison.md: each rung's trick against the rung it builds on."""
    groups: dict[str, list[str]] = {"helps": [], "hurts": [], "no detectable effect": []}
    for name, row in table.variants.items():
        c = row.vs.get("parent")
        if c is None or c.verdict not in groups:
            continue
        text = f"{name} ({_effect(c, adjusted=True)}"
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
        f"with {interval_words(table)}, over {table.min_seeds} seeds; {table.method_text}, "
        f"{family}, "
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
    if table.implicit:
        pairs = ", ".join(
            f"{n} vs {table.variants[n].vs['parent'].reference}"
            for n in table.implicit
            if "parent" in table.variants[n].vs
        )
        lines += [
            "",
            f"Rungs with no `compare.parents` entry are compared with the rung listed before "
            f"them: {pairs}. Set compare.parents to choose.",
        ]
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
            + ("" if need else ", more than params.yaml allows")
            + (_grow_text(g) if (g := table.grow) is not None else "."),
        ]
    return lines


CONTEXT_WORDS = {
    "bare": "on a bare model (or the ladder rung that adds it)",
    "full": "taken out of the full recipe",
}


SHORT_CONTEXT = {"bare": "on a bare model", "full": "in the full recipe"}
STATUS_WORDS = {
    "helps": "helps",
    "hurts": "hurts",
    "unclear": "could not be told apart",
    "mixed": "mixed",
}


def context_status(pairs: list) -> str:
    """One context of one trick in a word: helps or hurts where every pair says so, unclear
    where a pair could not be told apart, mixed otherwise."""
    verdicts = {c.verdict for _, c in pairs}
    if verdicts == {"helps"}:
        return "helps"
    if verdicts == {"hurts"}:
        return "hurts"
    return "unclear" if "no detectable effect" in verdicts else "mixed"


def _pair_text(with_: str, c: Comparison) -> str:
    """'+1.23 [+0.40, +2.06] (relu_model vs bare_tanh)': with minus without, the verdict's
    interval."""
    t = c.result
    ci = _interval(*c.adjusted) if c.adjusted else _interval(t.ci_low, t.ci_high)
    return f"{_pts(t.diff)}{ci} ({with_} vs {c.reference})"


def tricks_answer(table: Table, detail: bool = True) -> list[str]:
    """The lead's answer for LeCun's slide: which tricks help in both contexts, in one, in
    neither, and which could not be told apart, then (``detail``) each trick's effects; empty
    where the study compares no trick."""
    if not table.tricks:
        return []
    lines = [
        "## LeCun's slide, trick by trick",
        "",
        "Each trick with it against without it (with minus without, in points, with the "
        "interval its verdict was tested at, in the same family as the table), "
        + " and ".join(CONTEXT_WORDS.values())
        + ".",
        "",
    ]
    groups: dict[str, list[str]] = {"both": [], "bare": [], "full": [], "neither": [], "one": []}
    unclear, detail = [], []
    for trick, contexts in table.tricks.items():
        status = {k: context_status(ps) for k, ps in contexts.items()}
        helped = [k for k, s in status.items() if s == "helps"]
        if len(status) == 1:  # the other context's variants are not in this study
            ((k, s),) = status.items()
            groups["one"].append(f"{trick} ({STATUS_WORDS[s]} {SHORT_CONTEXT[k]})")
        else:
            groups["both" if len(helped) == 2 else helped[0] if helped else "neither"].append(trick)
        if "unclear" in status.values():
            unclear.append(trick)
        detail.append(
            f"- {trick}: "
            + "; ".join(
                f"{SHORT_CONTEXT[k]}, {STATUS_WORDS[status[k]]}: "
                + ", ".join(_pair_text(w, c) for w, c in ps)
                for k, ps in contexts.items()
            )
            + "."
        )
    titles = {
        "both": "Helps in both contexts",
        "bare": "Helps on a bare model only",
        "full": "Helps in the full recipe only",
        "neither": "Helps in neither",
        "one": "Measured in one context only (the study lacks the other's variants)",
    }
    for key, title in titles.items():
        if key != "one" or groups[key]:
            lines.append(f"- **{title}:** " + (", ".join(groups[key]) or "none") + ".")
    lines.append(
        "- **Could not be told apart in at least one context:** "
        + (", ".join(unclear) or "none")
        + "."
    )
    return lines + (["", *detail] if detail else [])


def _grow_text(g) -> str:
    """The command that adds seeds, and what it costs."""
    cost = (
        f"{g.added} new seed(s) per variant, {g.models} models to train, "
        f"{g.models / g.trained:.1f}x the {g.trained} this study trained (so about "
        f"{g.models / g.trained:.1f}x its training time on the same device); no seed already "
        "trained retrains."
    )
    if g.enough:
        return f". `{g.command}` adds them: {cost}"
    narrower = (1 + g.models / g.trained) ** 0.5  # intervals shrink as 1 / sqrt(seeds)
    return f". `{g.command}` narrows every interval by about {narrower:.1f}x: {cost}"


def header(table: Table) -> list[str]:
    """comparison.md's first lines: what data and what run it is about, and in words when the
    data is generated, when the baseline has barely learned, and when variants ran apart."""
    if table.made_by is None:
        return []
    lines = [provenance.describe(table.made_by), ""]
    if provenance.is_synthetic(table.made_by):
        lines += ["**Generated images: this says nothing about CIFAR-10.**", ""]
    base = table.variants[table.baseline].mean
    if table.chance is not None and base - table.chance < provenance.NEAR_CHANCE:
        lines += [
            f"**The baseline is within {points(provenance.NEAR_CHANCE):.0f} points of chance** "
            f"({points(base):.2f} vs {points(table.chance):.2f}): the models have barely "
            "learned, so the effects below say little. Train longer (`train.epochs`) or on "
            "easier data.",
            "",
        ]
    if table.differs:
        lines += [
            "**Not every variant ran alike:** they differ in "
            + ", ".join(table.differs)
            + " (comparison.json, `made_by` of each results/<variant>/report.json).",
            "",
        ]
    return lines


def lead(table: Table, full: str, width: int = 120) -> str:
    """What `compare` prints at the end of `dvc repro`: the first lines and the answer of
    comparison.md, each paragraph wrapped to ``width`` columns, then where the full table is."""
    import textwrap

    out = []
    for line in (
        header(table)
        + answer(table)
        + [""] * bool(table.tricks)
        + tricks_answer(table, detail=False)
    ):
        if not line:
            out.append("")
            continue
        indent = "  " if line.startswith("- ") else ""
        out.extend(
            textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
        )
    out += ["", f"Every comparison and every seed: {full}"]
    return "\n".join(out)


def markdown(table: Table) -> str:
    """The comparison for people: what it is about, the answer, then the full table (Markdown,
    points)."""

    def cell(row: Row, label: str) -> str:
        c = row.vs.get(label)
        if c is None:
            return "—"
        adj = (
            f", adj. {_p(c.p_adjusted)}{_interval(*c.adjusted) if c.adjusted else ''}"
            if table.correction != "none" and c.p_adjusted is not None
            else ""
        )
        mde = ""
        if c.verdict == "no detectable effect":
            mde = (
                f", {IDENTICAL}"
                if c.mde == 0
                else f", MDE {_pts(c.mde, False) if c.mde is not None else 'over 200'}"
            )
        r = f", r={c.r:.2f}" if c.r is not None else ""
        other = f", {c.method}" if c.method != table.method else ""
        return f"{_effect(c)} (p={_p(c.result.p)}{adj}, {c.verdict}{mde}{r}{other})"

    def ci(row: Row) -> str:
        if row.ci_low is None:
            return "— (one seed)"
        clipped = " (cut at the scale's end)" if row.clipped else ""
        return f"{points(row.ci_low):.2f} – {points(row.ci_high):.2f}{clipped}"

    lines = (
        header(table)
        + answer(table)
        + [""] * bool(table.tricks)
        + tricks_answer(table)
        + [
            "",
            "## All comparisons",
            "",
            f"Test micro-F1 (%), mean ± sd over seeds and the 95% CI of the mean; differences in "
            f"points with their 95% CI; {table.method_text}, p-values {table.adjusted} for the "
            f"verdict at alpha {table.alpha}"
            + (
                ", each with the interval at the level Holm tested it at (`adj.`: the one that "
                "agrees with the verdict)"
                if table.correction == "holm"
                else ""
            )
            + f"; MDE: the difference this run would detect with "
            f"{table.power:.0%} power; r: the correlation of the two variants' scores over seeds.",
            "",
            "| variant | micro-F1 | 95% CI | vs baseline | vs parent rung |",
            "| --- | --- | --- | --- | --- |",
        ]
    )
    for name, row in table.variants.items():
        lines.append(
            f"| {name} | {points(row.mean):.2f} ± {points(row.std):.2f} | {ci(row)} "
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
        cells = [f"{points(row.scores[s]):.2f}" if s in row.scores else "—" for s in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
