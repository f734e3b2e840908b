"""The report file (results/<variant>/report.json): every seed's scores, written by
`evaluate@<variant>` and read by `compare`: its one writer and its one reader.

Its keys: ``classes`` (names), ``seeds`` (in order), ``per_seed`` (seed as a string -> its
micro/macro-F1, loss, per-class precision/recall/F1/support and confusion matrix) and
``confusion_sum`` (every seed's confusion matrix summed) and ``made_by`` (what made them).
"""

from __future__ import annotations

from pathlib import Path

from cifar10_tricks.errors import UserError, rerun
from cifar10_tricks.files import read_json, write_json


def write(target: Path, report: dict) -> None:
    """Write a variant's report, atomically (inside the stage's atomic_group)."""
    write_json(target, report)


def read_scores(
    results: Path, names: list[str]
) -> tuple[dict[str, dict[int, float]], float, dict[str, dict]]:
    """Each variant's micro-F1 per seed (seed -> score) from its ``results/<variant>/report.json``,
    checked; chance: 1 / the number of classes the reports name; and each variant's record of
    what made it (:mod:`cifar10_tricks.provenance`)."""
    scores, chance, made_by = {}, None, {}
    for name in names:
        path = results / name / "report.json"
        report = read_json(path, f"evaluate@{name}")
        try:
            values = {
                int(s): float(report["per_seed"][str(s)]["micro_f1"]) for s in report["seeds"]
            }
            classes, made = report["classes"], report["made_by"]
        except (TypeError, KeyError, ValueError):
            values, classes, made = {}, None, None
        if (
            not values
            or not all(0 <= v <= 1 for v in values.values())
            or not isinstance(classes, list)
            or len(classes) < 2
            or not isinstance(made, dict)
        ):
            raise UserError(
                f"{path} holds no per-seed micro-F1 in [0, 1], no class names or no record of "
                f"what made it; {rerun(f'evaluate@{name}')}."
            )
        scores[name], made_by[name] = values, made
        chance = chance or 1 / len(classes)  # every variant scores the same data set
    return scores, chance, made_by
