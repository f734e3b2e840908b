"""The report file (results/<variant>/<seeds>/report.json): every seed's scores, written by
`evaluate@<variant>-<seeds>` and read by `compare`: its one writer and its one reader.

Its keys: ``classes`` (names), ``seeds`` (in order), ``per_seed`` (seed as a string -> its
micro/macro-F1, loss, per-class precision/recall/F1/support and confusion matrix),
``confusion_sum`` (every seed's confusion matrix summed), ``curves`` (seed as a string -> its
per-epoch ``test_acc`` and ``test_loss``) and ``made_by`` (what made them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import read_json, write_json
from cifar10_tricks.params import block_name, block_seeds


def write(target: Path, report: dict) -> None:
    """Write a variant's report, atomically (inside the stage's atomic_group)."""
    write_json(target, report)


def _curves_ok(curves, seeds) -> bool:
    """Each seed's per-epoch test accuracy and loss: lists of numbers."""
    return isinstance(curves, dict) and all(
        isinstance(curves.get(str(s)), dict)
        and all(
            isinstance(curves[str(s)].get(k), list)
            and curves[str(s)][k]
            and all(isinstance(v, (int, float)) for v in curves[str(s)][k])
            for k in ("test_acc", "test_loss")
        )
        for s in seeds
    )


@dataclass
class Study:
    """What `compare` reads of every variant, its blocks gathered: per variant, micro-F1 per
    seed (seed -> score), each seed's test curves (in seed order) and the record of what made
    them (``seeds``: all of the variant's, in block order); every block's record of what made it;
    and chance, 1 / the number of classes."""

    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)
    made_by: dict[str, dict] = field(default_factory=dict)
    blocks_made_by: list[dict] = field(default_factory=list)
    chance: float | None = None


def read_scores(results: Path, names: list[str], blocks: tuple) -> Study:
    """Every variant's ``results/<variant>/<seeds>/report.json``, one per block of ``blocks``
    (``train.seeds``), checked and gathered (:class:`Study`)."""
    study = Study()
    for name in names:
        study.scores[name], seed_curves = {}, {}
        for block in blocks:
            path = results / name / block_name(block) / "report.json"
            stage = f"evaluate@{name}-{block_name(block)}"
            report = read_json(path, stage)
            try:
                values = {
                    int(s): float(report["per_seed"][str(s)]["micro_f1"]) for s in report["seeds"]
                }
                classes, made, curves = report["classes"], report["made_by"], report["curves"]
            except (TypeError, KeyError, ValueError):
                values, classes, made, curves = {}, None, None, None
            if (
                not values
                or not all(0 <= v <= 1 for v in values.values())
                or not isinstance(classes, list)
                or len(classes) < 2
                or not isinstance(made, dict)
                or not _curves_ok(curves, values)
            ):
                raise UserError(
                    f"{path} holds no per-seed micro-F1 in [0, 1], no class names, no curves or "
                    f"no record of what made it; {rerun(stage)}."
                )
            if sorted(values) != list(block_seeds(block)):
                raise UserError(
                    f"{path} holds seeds {sorted(values)}, not those of block {block_name(block)}; "
                    f"{rerun(stage)}."
                )
            study.scores[name] |= values
            seed_curves |= {s: curves[str(s)] for s in values}
            study.blocks_made_by.append(made)
            if name not in study.made_by:
                study.made_by[name] = dict(made)
            study.chance = study.chance or 1 / len(classes)  # every variant scores the same data
        study.made_by[name]["seeds"] = list(study.scores[name])
        study.curves[name] = [seed_curves[s] for s in sorted(seed_curves)]
    return study


# What an evaluate stage writes in results/<variant>/<seeds>/ (stages/evaluate.py, dvc.yaml).
BLOCK_FILES = frozenset({"metrics.json", "report.json", "confusion.csv"})


def stale_blocks(results: Path, names: list[str], blocks: tuple) -> list[Path]:
    """The folders results/<variant>/<seeds>/ that params.yaml no longer names (a dropped
    block of seeds or variant), holding nothing but an evaluate stage's files: what a run
    with other params left behind.  A link, or a folder with anything else in it, is never
    listed."""
    named = {(n, block_name(b)) for n in names for b in blocks}
    stale = []
    if not results.is_dir() or results.is_symlink():
        return stale
    for variant in sorted(results.iterdir()):
        if variant.is_symlink() or not variant.is_dir():
            continue
        for block in sorted(variant.iterdir()):
            if (variant.name, block.name) in named or block.is_symlink() or not block.is_dir():
                continue
            files = list(block.iterdir())
            if all(f.name in BLOCK_FILES and f.is_file() and not f.is_symlink() for f in files):
                stale.append(block)
    return stale


def remove_stale(results: Path, names: list[str], blocks: tuple) -> list[Path]:
    """Remove :func:`stale_blocks` (and a variant's folder they leave empty); returns them."""
    stale = stale_blocks(results, names, blocks)
    for block in stale:
        for f in block.iterdir():
            f.unlink()
        block.rmdir()
        if not any(block.parent.iterdir()):
            block.parent.rmdir()
    return stale
