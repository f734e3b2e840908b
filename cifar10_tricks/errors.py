"""Expected failures: the one exception type a stage raises for them, and the advice it gives.

A :class:`UserError` is a problem the user can fix (bad params, a bad archive, a missing or torn
upstream output); :func:`cifar10_tricks.cli.run_main` prints its message as one ``error:`` line.
Every message names the problem and the way out; :func:`rerun` is the one place the way out
"rerun the stage that made this file" is worded.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names it and the way out."""


def rerun(stage: str, which: str = "") -> str:
    """The way out when an output of ``stage`` is unusable: force that stage to run again
    (``which`` names it in words first: "rerun its train stage with `dvc repro -f ...`")."""
    return f"rerun {which + ' with ' if which else ''}`dvc repro -f {stage}`"


def one_line(text: str) -> str:
    """``text`` on one line: an `error:` message is always the last line of the output."""
    return " ".join(str(text).split())
