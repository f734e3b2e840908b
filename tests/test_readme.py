"""What the README promises that a unit test can check: its test commands do what their comments
say, and its example of more seeds is the command the study itself would give."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from cifar10_tricks import params

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _collected(args: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_the_quick_test_line_runs_only_the_unit_tests():
    """The README's quick line, as typed, collects no end-to-end test and leaves them out of
    the full line's tests, and the full line runs them."""
    line = next(x for x in README.splitlines() if x.startswith("python -m pytest -m"))
    assert "unit tests alone" in line
    quick = _collected(shlex.split(line.split("#")[0])[3:])
    everything = _collected([])
    e2e = _collected(["-m", "e2e"])
    assert quick and e2e and not set(quick) & set(e2e)
    assert set(quick) | set(e2e) == set(everything)
    assert not [t for t in quick if t.startswith("tests/test_pipeline.py")]


def test_the_more_seeds_example_is_what_a_study_of_its_blocks_would_be_told():
    """The README's example grows a [0-9] study to 20 seeds, says so, and is the command that
    params.grow (what comparison.md's lead prints) builds from those blocks."""
    example = re.search(
        r"from `\[0-9\]` to 20 seeds: `dvc exp run -S 'train\.seeds=\[(.*?)\]'`", README
    )
    assert example, "the README's more-seeds example names the study it starts from"
    blocks, _ = params.grow(("0-9",), 20)
    assert example.group(1) == ",".join(blocks)
