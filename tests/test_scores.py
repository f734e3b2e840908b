"""The report file: what evaluate writes, compare reads back; torn, it names the stage to rerun."""

from __future__ import annotations

import pytest

from cifar10_tricks import scores
from cifar10_tricks.errors import UserError
from tests.conftest import MADE_BY, fake_results


def _report(seeds: list[int], score: float) -> dict:
    return {
        "classes": list("abcd"),
        "seeds": seeds,
        "per_seed": {str(s): {"micro_f1": score} for s in seeds},
        "curves": {str(s): {"test_acc": [s / 10], "test_loss": [1.0]} for s in seeds},
        "made_by": {**MADE_BY, "seeds": seeds},
    }


def test_reports_are_read_back_as_each_seeds_micro_f1_and_chance(tmp_path):
    """A variant's blocks gathered: every seed's score and curves, in seed order; the record
    of what made them with all its seeds."""
    scores.write(tmp_path / "a" / "3-4" / "report.json", _report([3, 4], 0.25))
    scores.write(tmp_path / "a" / "1" / "report.json", _report([1], 0.75))
    study = scores.read_scores(tmp_path, ["a"], ("3-4", 1))
    assert study.scores == {"a": {3: 0.25, 4: 0.25, 1: 0.75}} and study.chance == 0.25
    assert study.made_by == {"a": {**MADE_BY, "seeds": [3, 4, 1]}}
    assert [c["test_acc"] for c in study.curves["a"]] == [[0.1], [0.3], [0.4]]
    assert [m["seeds"] for m in study.blocks_made_by] == [[3, 4], [1]]


def test_a_report_whose_seeds_are_not_its_blocks_names_the_stage(tmp_path):
    scores.write(tmp_path / "a" / "0-1" / "report.json", _report([0, 2], 0.5))
    with pytest.raises(UserError, match=r"seeds \[0, 2\], not those of block 0-1; rerun `dvc"):
        scores.read_scores(tmp_path, ["a"], ("0-1",))


@pytest.mark.parametrize(
    "report",
    [
        '{"seeds": [], "per_seed": {}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 7}}}',
        '{"seeds": [0], "per_seed": {}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": "x"}}}',
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 0.5}}}',  # no class names
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 0.5}}, "classes": ["a", "b"]}',  # no made_by
        '{"seeds": [0], "per_seed": {"0": {"micro_f1": 0.5}}, "classes": ["a", "b"], '
        '"made_by": {}, "curves": {"0": {"test_acc": [], "test_loss": [1]}}}',  # no epochs
        "[]",
    ],
)
def test_a_torn_or_empty_report_names_the_stage(tmp_path, report):
    fake_results(tmp_path / "results", {"baseline": [0.5, 0.6]})
    (tmp_path / "results/baseline/0-1/report.json").write_text(report)
    with pytest.raises(UserError, match=r"rerun `dvc repro -f evaluate@baseline-0-1`"):
        scores.read_scores(tmp_path / "results", ["baseline"], ("0-1",))


def test_stale_blocks_are_only_evaluates_folders_that_params_no_longer_name(tmp_path):
    """A dropped block and a dropped variant go; a named block, a folder holding anything but
    evaluate's files, and a link are left alone."""
    from cifar10_tricks.scores import remove_stale

    results = tmp_path / "results"
    for variant, block in (("a", "0-1"), ("a", "2-3"), ("gone", "0-1"), ("b", "0-1")):
        folder = results / variant / block
        folder.mkdir(parents=True)
        for name in ("metrics.json", "report.json", "confusion.csv"):
            (folder / name).write_text("{}")
    (results / "b" / "9").mkdir()
    (results / "b" / "9" / "notes.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metrics.json").write_text("{}")
    (results / "b" / "7").symlink_to(outside)
    removed = remove_stale(results, ["a", "b"], ("0-1",))
    assert removed == [results / "a" / "2-3", results / "gone" / "0-1"]
    assert not (results / "gone").exists() and not (results / "a" / "2-3").exists()
    assert (results / "a" / "0-1" / "report.json").is_file()
    assert (results / "b" / "9" / "notes.txt").is_file()
    assert (outside / "metrics.json").is_file() and (results / "b" / "7").is_symlink()
