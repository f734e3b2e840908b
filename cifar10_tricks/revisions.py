"""Is a difference between two revisions real?  The paired diff of `cifar10-tricks diff`.

A study's every per-seed score is in git (results/<variant>/<block>/report.json) and seed s
sees the same batches in every revision with the same data and settings, so two revisions are
compared seed by seed, as `compare` compares variants: per variant, the difference in mean
test micro-F1 with the interval Holm tested it at, the verdict (Holm over the variants that
changed), the smallest effect the comparison could detect, and the seeds paired.  Everything is
read from git (``git show REV:path``): no DVC cache, no network.  A revision is anything git
names (a branch, a commit, a tag) or a `dvc exp` experiment's name (its ref under refs/exps).
Pairing needs the same data (md5), sizes, epochs and seeds on both sides, and per variant the
same batch size and shuffling; otherwise the seeds are compared as independent (Welch) and
the reason is said.  :mod:`cifar10_tricks.command` prints it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cifar10_tricks.errors import UserError
from cifar10_tricks.inference import detectable, holm, holm_levels, interval, paired, welch

MAX_REPORT_BYTES = 64 * 2**20  # as files.MAX_JSON_BYTES: one block's report.json
WORKSPACE = "workspace"
DATA_KEYS = ("n_train", "n_test", "md5")  # of made_by["data"]
BATCH_KNOBS = ("batch_size", "shuffle")  # a variant's settings that fix its seeds' batches


@dataclass
class Side:
    """One revision's study: per variant its seed -> score, its record, its knobs."""

    name: str
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    made_by: dict[str, dict] = field(default_factory=dict)
    knobs: dict[str, dict] = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def _git(root: Path, *args: str, check: bool = True) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except OSError as exc:
        raise UserError(f"cannot run git ({exc.strerror}); install git.") from None
    if check and out.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {' '.join(out.stderr.split())[:300]}")
    return out.stdout


def resolve(root: Path, rev: str) -> str:
    """The commit ``rev`` names: a git revision, or a `dvc exp` experiment's name."""
    found = subprocess.run(
        ["git", "rev-parse", "-q", "--verify", f"{rev}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if found.returncode == 0:
        return found.stdout.strip()
    refs = _git(root, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps")
    hits = [line.split()[0] for line in refs.splitlines() if line.endswith("/" + rev)]
    if len(hits) == 1:
        return hits[0]
    raise UserError(
        f"{rev!r} names no commit, branch, tag or experiment here"
        + (" (several experiments have that name)" if hits else "")
        + "; see `git branch -a` and `dvc exp list`."
    )


def _read(root: Path, commit: str | None, path: str) -> str | None:
    """The text of ``path`` at ``commit`` (None: the workspace), or None where it is absent."""
    if commit is None:
        file = root / path
        if not file.is_file():
            return None
        if file.stat().st_size > MAX_REPORT_BYTES:
            raise UserError(f"{path} is larger than a report can be; is it the right file?")
        return file.read_text(encoding="utf-8")
    size = _git(root, "cat-file", "-s", f"{commit}:{path}", check=False).strip()
    if not size.isdigit():
        return None
    if int(size) > MAX_REPORT_BYTES:
        raise UserError(f"{path} at {commit[:10]} is larger than a report can be.")
    return _git(root, "show", f"{commit}:{path}")


def read_side(root: Path, rev: str | None) -> Side:
    """The study ``rev`` committed (None: the workspace): its params' study and blocks, and
    every variant's per-seed scores from results/."""
    commit = None if rev is None else resolve(root, rev)
    text = _read(root, commit, "params.yaml")
    if text is None:
        raise UserError(f"{rev or WORKSPACE} has no params.yaml: is it this project?")
    params = yaml.safe_load(text) or {}
    variants = params.get("variants") or {}
    study = params.get("study") or list(variants)
    side = Side(rev or WORKSPACE, params=params)
    for name in study:
        for block in (params.get("train") or {}).get("seeds") or []:
            path = f"results/{name}/{block}/report.json"
            raw = _read(root, commit, path)
            if raw is None:
                continue
            try:
                report = json.loads(raw)
                scores = {
                    int(s): float(report["per_seed"][str(s)]["micro_f1"]) for s in report["seeds"]
                }
                made = report["made_by"]
            except (ValueError, KeyError, TypeError):
                raise UserError(
                    f"{path} at {side.name} is not a report of the evaluate stage."
                ) from None
            side.scores.setdefault(name, {}).update(scores)
            side.made_by[name] = made
        if name in side.scores:
            side.knobs[name] = dict(variants.get(name) or {})
    if not side.scores:
        raise UserError(
            f"{side.name} holds no results/<variant>/<block>/report.json: commit a study first "
            "(the README's commit line)."
        )
    return side


def why_not_paired(a: Side, b: Side, name: str) -> str | None:
    """Why variant ``name``'s seeds cannot be paired across the two sides, in words, or None."""
    ma, mb = a.made_by[name], b.made_by[name]
    reasons = []
    pairs = [("epochs", ma.get("epochs"), mb.get("epochs"))]
    pairs += [(k, ma.get("data", {}).get(k), mb.get("data", {}).get(k)) for k in DATA_KEYS]
    for key, va, vb in pairs:
        if va != vb:
            reasons.append(f"{'data md5' if key == 'md5' else key} differ ({va} vs {vb})")
    for knob in BATCH_KNOBS:
        va, vb = a.knobs[name].get(knob), b.knobs[name].get(knob)
        if va != vb:
            reasons.append(f"{knob} differs ({va} vs {vb})")
    if set(a.scores[name]) != set(b.scores[name]):
        reasons.append("the seeds differ")
    return "; ".join(reasons) or None


@dataclass
class Change:
    """One variant from the base side to the other: other minus base, [0, 1] units."""

    variant: str
    diff: float
    paired: bool
    seeds: int
    why_unpaired: str | None = None
    p: float | None = None
    p_adjusted: float | None = None
    interval: tuple[float, float] | None = None
    mde: float | None = None
    verdict: str = "identical on every seed"


def diff(base: Side, other: Side, alpha: float = 0.05) -> dict:
    """Every variant of either side: changed ones tested (Holm over them), identical ones and
    those on one side only named."""
    both = [n for n in base.scores if n in other.scores]
    changes, tests = [], []
    for name in both:
        a, b = base.scores[name], other.scores[name]
        why = why_not_paired(base, other, name)
        if not why and all(a[s] == b[s] for s in a):
            changes.append(Change(name, 0.0, True, len(a)))
            continue
        seeds = sorted(a)
        t = (
            paired([b[s] for s in seeds], [a[s] for s in seeds])
            if not why
            else welch(list(b.values()), list(a.values()))
        )
        change = Change(name, t.diff, not why, len(seeds) if not why else min(len(a), len(b)), why)
        changes.append(change)
        tests.append((change, t))
    tested = [(c, t) for c, t in tests if t.p is not None]
    raw = [t.p for _, t in tested]
    levels = holm_levels(raw, alpha) if raw else []
    strictest = alpha / len(tested) if tested else alpha
    for (c, t), p_adj, level in zip(tested, holm(raw), levels):
        c.p, c.p_adjusted, c.interval = t.p, p_adj, interval(t, level)
        c.mde = detectable(t.se, t.df, strictest)
        c.verdict = (
            ("helps" if c.diff > 0 else "hurts") if p_adj < alpha else "could not be told apart"
        )
    for c, t in tests:
        if t.p is None:
            c.verdict = "needs >= 2 seeds"
    return {
        "base": base.name,
        "other": other.name,
        "alpha": alpha,
        "changes": changes,
        "only_base": [n for n in base.scores if n not in other.scores],
        "only_other": [n for n in other.scores if n not in base.scores],
        "knobs": changed_knobs(base.params, other.params),
    }


def changed_knobs(a: dict, b: dict, prefix: str = "") -> dict[str, tuple]:
    """The params that differ, as flat dotted keys -> (base value, other value)."""
    out: dict[str, tuple] = {}
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        where = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= changed_knobs(va, vb, where + ".")
        elif va != vb:
            out[where] = (va, vb)
    return out
