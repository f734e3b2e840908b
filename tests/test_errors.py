"""The rerun advice, worded in one place, and messages on one line."""

from __future__ import annotations

from cifar10_tricks.errors import one_line, rerun


def test_rerun_names_the_stage_to_force():
    assert rerun("stats") == "rerun `dvc repro -f stats`"
    assert rerun("train@baseline") == "rerun `dvc repro -f train@baseline`"
    assert (
        rerun("train@x", "its train stage") == "rerun its train stage with `dvc repro -f train@x`"
    )


def test_one_line_joins_lines_and_spaces():
    assert one_line("a\n  b\tc \n") == "a b c"
