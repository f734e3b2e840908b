"""The report file: what evaluate writes, compare reads back; torn, it names the stage to rerun."""

from __future__ import annotations

import pytest

from cifar10_tricks import scores
from cifar10_tricks.errors import UserError
from tests.conftest import MADE_BY, fake_results


def test_a_report_is_read_back_as_each_seeds_micro_f1_and_chance(tmp_path):
    report = {
        "classes": list("abcd"),
        "seeds": [3, 1],
        "per_seed": {"3": {"micro_f1": 0.25}, "1": {"micro_f1": 0.75}},
        "made_by": MADE_BY,
    }
    scores.write(tmp_path / "a" / "report.json", report)
    got, chance, made_by = scores.read_scores(tmp_path, ["a"])
    assert got == {"a": {3: 0.25, 1: 0.75}} and chance == 0.25 and made_by == {"a": MADE_BY}


@pytest.mark.parametrize(
    "report",
    [
        '{"seeds": [], "per_seed": {}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 7}}}',
        '{"seeds": [0], "per_seed": {}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": "x"}}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 0.5}}}',  # no class names
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 0.5}}, "classes": ["a", "b"]}',  # no made_by
        "[]",
    ],
)
def test_a_torn_or_empty_report_names_the_stage(tmp_path, report):
    fake_results(tmp_path / "results", {"baseline": [0.5, 0.6]})
    (tmp_path / "results/baseline/report.json").write_text(report)
    with pytest.raises(UserError, match=r"rerun `dvc repro -f evaluate@baseline`"):
        scores.read_scores(tmp_path / "results", ["baseline"])
