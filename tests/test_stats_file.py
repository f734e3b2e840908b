"""The stats file: read back as written; torn or hand-edited, it names the stage that makes it."""

from __future__ import annotations

import pytest

from cifar10_tricks import stats_file
from cifar10_tricks.errors import UserError


@pytest.mark.parametrize(
    "text",
    [
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2',
        '{"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}',
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}',
        '{"mean": "x", "std": null}',
        "[]",
    ],
)
def test_a_torn_or_hand_edited_stats_file_names_the_stage(tmp_path, text):
    (tmp_path / "stats.json").write_text(text)
    with pytest.raises(UserError, match=r"rerun `dvc repro -f stats`"):
        stats_file.read(tmp_path / "stats.json")


def test_stats_read_back_what_was_written(tmp_path):
    stats_file.write(tmp_path / "s.json", [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], 10)
    assert stats_file.read(tmp_path / "s.json") == {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
