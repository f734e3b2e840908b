"""The cifar10-tricks command: `study NAME` is the `dvc exp run` that trains a named study."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cifar10_tricks import command, params
from cifar10_tricks.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_study_slide_is_one_dvc_exp_run_naming_every_variant_of_the_study(capsys):
    command.main(["study", "slide", "--print", "--params", str(ROOT / "params.yaml"), "--queue"])
    printed = shlex.split(capsys.readouterr().out)
    p = params.load(ROOT / "params.yaml")
    assert printed == [
        "dvc",
        "exp",
        "run",
        "-S",
        f"study=[{','.join(p.studies['slide'])}]",
        "--queue",
    ]


def test_an_unknown_study_is_one_error_line_naming_the_known_ones():
    with pytest.raises(UserError, match=r"no study 'ladder' .*known: blog, slide"):
        command.study_command(params.load(ROOT / "params.yaml"), "ladder", [])
    out = subprocess.run(
        [sys.executable, "-c", "from cifar10_tricks.command import entry; entry()", "study", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.startswith("error: no study 'x'"), out.stderr
