"""The ``cifar10-tricks`` command, installed with the project: what is easier said to DVC by a
command than typed.

    cifar10-tricks study slide [--print] [dvc exp run options ...]

``study NAME`` runs ``dvc exp run -S 'study=[...]'`` with the variants of ``studies.NAME`` in
params.yaml (printing the command first), and any further options passed on to ``dvc exp run``
(``--queue``, ``-n slide``, ``-S train.seeds=[0-2]``, ...).  The experiment's params say the
whole list, so `dvc params diff` and `dvc exp show` show exactly what ran; only the variants it
adds train, as a new block of seeds does.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from cifar10_tricks import params
from cifar10_tricks.errors import UserError, one_line


def study_command(p: params.Params, name: str, extra: list[str]) -> list[str]:
    """The `dvc exp run` that trains and compares ``studies.<name>``."""
    if name not in p.studies:
        raise UserError(
            f"no study {name!r} in params.yaml; known: {', '.join(p.studies)} (under `studies`)."
        )
    return ["dvc", "exp", "run", "-S", f"study=[{','.join(p.studies[name])}]", *extra]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar10-tricks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser(
        "study",
        help="train and compare a named study of params.yaml (dvc exp run -S study=[...])",
        description="Run `dvc exp run -S 'study=[...]'` with the variants of studies.NAME; "
        "further options go to dvc exp run.",
    )
    study.add_argument("name", help="a study under `studies` in params.yaml: blog, slide, ...")
    study.add_argument("--params", default="params.yaml", help="the params file (params.yaml)")
    study.add_argument("--print", action="store_true", help="print the command, run nothing")
    args, extra = parser.parse_known_args(argv)
    command = study_command(params.load(args.params), args.name, extra)
    print(shlex.join(command), file=sys.stdout if args.print else sys.stderr, flush=True)
    if args.print:
        return
    # DVC as this interpreter runs it: the project's environment, whatever PATH says.
    raise SystemExit(subprocess.call([sys.executable, "-m", *command]))


def entry() -> None:
    """The console script: expected failures as one ``error:`` line, exit 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    entry()
