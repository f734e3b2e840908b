"""The paired diff between revisions: from git alone, paired only where valid, Holm over the
variants that changed, a sweep as one table and one chart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from cifar10_tricks import command, revisions
from cifar10_tricks.errors import UserError
from cifar10_tricks.testing import GIT_ENV
from tests.conftest import fake_results, project_params

NAMES = ["baseline", "norm_inputs", "lr_schedule"]
BASE = {
    "baseline": [0.50, 0.52, 0.51, 0.53, 0.50, 0.52],
    "norm_inputs": [0.60, 0.61, 0.62, 0.60, 0.63, 0.61],
    "lr_schedule": [0.62, 0.63, 0.61, 0.64, 0.62, 0.63],
}


def _git(repo, *args):
    import os

    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout  # fmt: skip


def _study(repo, scores, message, epochs=None):
    """results/ and params.yaml for ``scores``, committed."""
    shutil.rmtree(repo / "results", ignore_errors=True)
    blocks = fake_results(repo / "results", scores, block_size=3)
    if epochs is not None:
        for report in (repo / "results").glob("*/*/report.json"):
            data = json.loads(report.read_text())
            data["made_by"]["epochs"] = epochs
            report.write_text(json.dumps(data))
    project_params(repo / "params.yaml", NAMES, blocks)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _study(repo, BASE, "study on main")
    return repo


def test_a_branch_that_changed_one_variant_is_tested_seed_by_seed(repo, monkeypatch, capsys):
    """Only the changed variant is tested (paired, 6 seeds); the others read identical; the
    table fits 120 columns; --json and --md say the same."""
    _git(repo, "checkout", "-q", "-b", "better")
    moved = {
        **BASE,
        "lr_schedule": [v + 0.02 + 0.001 * (i % 2) for i, v in enumerate(BASE["lr_schedule"])],
    }
    _study(repo, moved, "better schedule")
    monkeypatch.chdir(repo)
    command.main(["diff", "main"])
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= 120, text
    row = next(line for line in text.splitlines() if line.startswith("lr_schedule"))
    assert "helps" in row and "6 seeds, paired" in row and "+2.05" in row
    assert "identical on every seed: 2 variant(s): baseline, norm_inputs" in text
    command.main(["diff", "main", "--json"])
    out = json.loads(capsys.readouterr().out)
    changed = [c for c in out["changes"] if c["verdict"] != "identical on every seed"]
    assert [c["variant"] for c in changed] == ["lr_schedule"] and changed[0]["paired"]
    assert changed[0]["ci_low"] > 0 and changed[0]["diff"] == pytest.approx(0.0205)
    command.main(["diff", "main", "--md"])
    assert "| lr_schedule | +2.05 |" in capsys.readouterr().out


def test_pairing_is_refused_with_a_reason_where_the_epochs_differ(repo, monkeypatch, capsys):
    _git(repo, "checkout", "-q", "-b", "longer")
    moved = {**BASE, "baseline": [v + 0.05 for v in BASE["baseline"]]}
    _study(repo, moved, "two epochs", epochs=2)
    monkeypatch.chdir(repo)
    command.main(["diff", "main", "--json"])
    out = json.loads(capsys.readouterr().out)
    for c in out["changes"]:
        assert not c["paired"] and "epochs differ (1 vs 2)" in c["why_unpaired"]
    command.main(["diff", "main"])
    assert "not paired: epochs differ (1 vs 2)" in capsys.readouterr().out


def test_experiments_by_name_make_one_sweep_table_and_a_dose_response_chart(
    repo, monkeypatch, capsys
):
    """Two experiments (refs under refs/exps, as `dvc exp` keeps them) against main: each
    named, each compared with main, and the chart of effect against the knob's value."""
    main = _git(repo, "rev-parse", "HEAD").strip()
    for name, shift, lr in (("exp-a", 0.01, 0.003), ("exp-b", 0.03, 0.004)):
        _git(repo, "checkout", "-q", "--detach", main)
        moved = {**BASE, "lr_schedule": [v + shift for v in BASE["lr_schedule"]]}
        _study(repo, moved, name)
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["variants"]["lr_schedule"]["lr"] = lr
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        _git(repo, "commit", "-qam", f"{name} lr")
        _git(repo, "update-ref", f"refs/exps/ab/cdef/{name}", "HEAD")
    _git(repo, "checkout", "-q", "main")
    monkeypatch.chdir(repo)
    chart = repo / "out" / "sweep.png"
    command.main(["diff", "main", "exp-a", "exp-b", "-o", str(chart)])
    text = capsys.readouterr().out
    assert "exp-a against main" in text and "exp-b against main" in text
    assert "variants.lr_schedule.lr 0.001 -> 0.004" in text
    assert chart.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="names no commit, branch, tag or experiment"):
        revisions.resolve(repo, "exp-z")


def test_the_console_script_says_a_bad_revision_in_one_line(repo):
    out = subprocess.run(
        [sys.executable, "-c", "from cifar10_tricks.command import entry; entry()", "diff", "nope"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(revisions.__file__).rsplit("/cifar10_tricks/", 1)[0],
            "PATH": "/usr/bin:/bin",
        },
    )
    assert out.returncode == 2 and out.stderr.startswith("error: 'nope' names no commit"), (
        out.stderr
    )
