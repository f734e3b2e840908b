"""End to end: the real `dvc repro` in a temporary git repository, on synthetic data."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from cifar10_tricks.testing import Project, make_project, run_env

pytestmark = pytest.mark.e2e


def test_download_and_stats_stages(tmp_path):
    proj = make_project(tmp_path)
    proj.dvc("repro", "download", "stats")
    stats = json.loads((tmp_path / "data/stats.json").read_text())
    assert len(stats["mean"]) == 3 and all(0 < s < 0.5 for s in stats["std"])
    assert stats["n_images"] == 500
    status = proj.dvc("status", "download", "stats").stdout
    assert "up to date" in status
    again = proj.dvc("repro", "download", "stats").stdout
    assert "Running stage" not in again and "didn't change" in again

    # An edit to a section the stages do not read reruns neither of them.
    raw = proj.params()
    raw["train"]["epochs"] = 3
    proj.set_params(raw)
    assert "Running stage" not in proj.dvc("repro", "download", "stats").stdout


def test_offline_download_fails_cleanly(tmp_path):
    proj = make_project(tmp_path)
    raw = proj.params()
    raw["data"]["source"] = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    proj.set_params(raw)
    out = proj.dvc("repro", "download", check=False)
    assert out.returncode != 0
    assert "cannot download http://127.0.0.1:9/cifar-10-python.tar.gz" in out.stderr
    assert "dvc exp run -S data.source=" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data/cifar10.npz").exists()


def test_before_any_run_plots_and_metrics_show_say_there_is_nothing_yet(tmp_path):
    """What docs/results.md says a clone with no committed study gets: DVC's one line that it
    found nothing, exit 0, and no traceback."""
    proj = make_project(tmp_path / "p")
    plots = proj.dvc("plots", "show", "-o", str(tmp_path / "plots"))
    assert "DVC failed to load some plots for following revisions: 'workspace'" in (
        plots.stdout + plots.stderr
    )
    assert (tmp_path / "plots/index.html").is_file()
    metrics = proj.dvc("metrics", "show")
    assert "DVC failed to load some metrics" in metrics.stdout + metrics.stderr
    assert "Traceback" not in plots.stderr + metrics.stderr


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The whole pipeline on tiny synthetic data (1 epoch, 2 seeds, every variant), run and
    committed.  Read-only: a test that changes a project takes its own copy (``own_run``)."""
    proj = make_project(tmp_path_factory.mktemp("full"))
    raw = proj.params()
    raw["train"].update({"epochs": 1, "seeds": ["0-1"]})
    proj.set_params(raw)
    proj.commit("tiny run")
    proc = proj.dvc("repro")
    proj.first_repro = proc.stdout + proc.stderr
    proj.commit("results")
    return proj


# The commit before the slide's knobs (#37): the blog's eight must train as they did there.
BEFORE_THE_SLIDE = "ac3f71b1f31c"


def test_the_blogs_eight_give_the_results_they_gave_before_the_slides_knobs(full_run, tmp_path):
    """The tiny study of ``full_run``, run again from the checkout before the slide's knobs
    existed: every variant's scores, report, confusion counts and fp32 predictions are the same
    bytes (the models' weights too; their files gain the config's new `activation`)."""
    import tarfile

    root = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "-q", "--verify", f"{BEFORE_THE_SLIDE}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        pytest.skip(f"this checkout lacks commit {BEFORE_THE_SLIDE} (a shallow clone?)")
    archive = tmp_path / "before.tar"
    subprocess.run(
        ["git", "-C", str(root), "archive", "-o", str(archive), BEFORE_THE_SLIDE], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "before", filter="data")
    old = make_project(tmp_path / "old", source=tmp_path / "before")
    raw = old.params()
    raw["train"].update({"epochs": 1, "seeds": ["0-1"]})
    old.set_params(raw)
    old.dvc("repro")
    import torch

    for name in full_run.params()["study"]:
        for file in ("metrics.json", "report.json", "confusion.csv"):
            new, was = (p.path / "results" / name / "0-1" / file for p in (full_run, old))
            assert new.read_bytes() == was.read_bytes(), (name, file)
        new, was = (p.path / "runs" / name / "0-1" / "predictions.npz" for p in (full_run, old))
        assert new.read_bytes() == was.read_bytes(), name
        for seed in (0, 1):
            new, was = (
                torch.load(p.path / "models" / name / "0-1" / f"seed_{seed}.pt", weights_only=True)
                for p in (full_run, old)
            )
            assert new["state_dict"].keys() == was["state_dict"].keys()
            assert all(
                torch.equal(new["state_dict"][k], was["state_dict"][k]) for k in was["state_dict"]
            )


def test_a_first_run_is_quiet(full_run):
    """A project's first `dvc repro` (no dvc.lock, no cache, as in a fresh clone) prints no
    warning, DVC's or Python's, and no traceback."""
    out = full_run.first_repro
    assert "Running stage 'compare'" in out
    assert not re.search("warn|traceback", out, re.IGNORECASE), out


@pytest.fixture
def own_run(full_run, tmp_path):
    """A copy of ``full_run`` (git history, DVC cache and all) for one test to change."""
    import shutil

    def skip_dvc_tmp(folder, names):  # DVC's per-repo state and queue: made afresh
        return ["tmp"] if folder.endswith(".dvc") else []

    shutil.copytree(full_run.path, tmp_path / "project", symlinks=True, ignore=skip_dvc_tmp)
    return Project(tmp_path / "project")


def test_every_variant_has_metrics_and_plot_data(full_run):
    variants = list(full_run.params()["study"])
    assert len(variants) == 8
    for name in variants:
        res, run = full_run.path / "results" / name / "0-1", full_run.path / "runs" / name / "0-1"
        metrics = json.loads((res / "metrics.json").read_text())
        assert metrics["seeds"] == 2 and 0 <= metrics["micro_f1"] <= 1
        assert {"micro_f1_sd", "macro_f1", "macro_f1_sd", "loss", "loss_sd"} <= set(metrics)
        for seed in (0, 1):
            assert (full_run.path / "models" / name / "0-1" / f"seed_{seed}.pt").is_file()
        curve = (run / "live/plots/metrics/test/acc.tsv").read_text().splitlines()
        assert curve == [curve[0], curve[1]] and curve[0] == "step\tacc"  # header + 1 epoch
        assert curve[1].startswith("1\t")  # epochs counted from 1, as compare counts them
        assert (run / "live/plots/metrics/seed_1/train/loss.tsv").is_file()
        confusion = (res / "confusion.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted,count" and len(confusion) == 1 + 10 * 10
    shown = full_run.dvc("metrics", "show", "--json").stdout
    assert all(f"results/{name}/0-1/metrics.json" in shown for name in variants)
    # DVC's outputs stay out of git without a .gitignore of DVC's in every folder.
    assert full_run.git("status", "--porcelain", "--ignored", "models", "runs") == (
        "!! models/\n!! runs/\n"
    )


def test_rerun_is_a_no_op_and_one_knob_reruns_one_variant(own_run):
    assert "Running stage" not in own_run.dvc("repro").stdout
    raw = own_run.params()
    raw["variants"]["dropout_conv"]["dropout_conv"] = 0.3
    own_run.set_params(raw)
    out = own_run.dvc("repro").stdout
    ran = sorted(
        line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")
    )
    assert ran == ["compare", "evaluate@dropout_conv-0-1", "train@dropout_conv-0-1"]
    assert "variants.dropout_conv.dropout_conv" in own_run.dvc("params", "diff").stdout


def test_one_variants_dag_fits_a_terminal(full_run):
    """docs/pipeline.md's narrow `dvc dag`: one variant's path, well within 120 columns."""
    out = full_run.dvc("dag", "evaluate@baseline-0-1").stdout
    for stage in ("download", "stats", "train@baseline-0-1", "evaluate@baseline-0-1"):
        assert f"| {stage} |" in out, out
    assert max(map(len, out.splitlines())) <= 40, out
    assert "```mermaid" in full_run.dvc("dag", "--md").stdout


def test_compare_covers_every_variant(full_run):
    table = json.loads((full_run.path / "compare/comparison.json").read_text())
    variants = list(full_run.params()["study"])
    assert list(table["variants"]) == variants
    assert table["variants"]["dropout_both"]["vs_parent"] == "init_weights"
    assert table["variants"]["norm_inputs"]["vs_parent"] == "baseline"
    assert (full_run.path / "compare/micro_f1.png").stat().st_size > 10_000
    md = (full_run.path / "compare/comparison.md").read_text()
    assert all(f"| {name} |" in md for name in variants)
    curves = (full_run.path / "compare/curves.csv").read_text().splitlines()
    assert len(curves) == 1 + len(variants)  # 1 epoch each


def test_metrics_diff_between_branches(own_run):
    own_run.git("checkout", "-q", "-b", "more-dropout")
    raw = own_run.params()
    raw["variants"]["dropout_dense"]["dropout_dense"] = 0.5
    own_run.set_params(raw)
    own_run.dvc("repro")
    own_run.commit("dropout_dense 0.5")
    diff = json.loads(own_run.dvc("metrics", "diff", "main", "--json").stdout)
    changed = {path for path, values in diff.items() if values}
    assert changed <= {"results/dropout_dense/0-1/metrics.json", "compare/summary.json"}
    assert "results/dropout_dense/0-1/metrics.json" in changed
    assert set(diff.get("compare/summary.json", {})) <= {"micro_f1.dropout_dense"}
    assert "loss" in diff["results/dropout_dense/0-1/metrics.json"]


def test_plots_show_writes_a_page_with_the_chart(full_run, tmp_path):
    out = tmp_path / "plots"
    full_run.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "micro_f1.png" in html
    assert "Test accuracy per epoch, in the training precision" in html and "confusion.csv" in html
    pngs = list(out.rglob("*micro_f1.png"))
    assert pngs and pngs[0].read_bytes()[:4] == b"\x89PNG"
    full_run.dvc("plots", "diff", "main", "-o", str(tmp_path / "diff"))
    assert (tmp_path / "diff" / "index.html").is_file()


def test_exp_run_and_readable_exp_show(own_run):
    before = json.loads((own_run.path / "compare/summary.json").read_text())["micro_f1"]
    own_run.dvc("exp", "run", "-n", "conv03", "-S", "variants.dropout_conv.dropout_conv=0.3")
    shown = own_run.dvc(
        "exp", "show", "--csv", "--drop", ".*", "--keep", "Experiment|micro_f1[.]"
    ).stdout.splitlines()
    header = shown[0].split(",")
    # Each row named, then short names, no path:name wall.
    assert header == ["Experiment"] + [f"micro_f1.{name}" for name in before]
    rows = [dict(zip(header, line.split(","))) for line in shown[1:]]
    assert "conv03" in [row["Experiment"] for row in rows]  # the experiment, by its name
    after = json.loads((own_run.path / "compare/summary.json").read_text())["micro_f1"]
    unchanged = [n for n in before if n != "dropout_conv"]
    assert {n: after[n] for n in unchanged} == {n: before[n] for n in unchanged}
    # The README's clean-up keeps the committed study and the experiment: after it, going back
    # to the commit finds every output in the cache (`dvc gc -w` alone dropped the study's).
    gc = own_run.dvc("gc", "-w", "-a", "-T", "--all-experiments", "-f")
    assert "missing version info" not in gc.stdout + gc.stderr, gc.stdout + gc.stderr
    own_run.git("checkout", "--", ".")
    own_run.dvc("checkout")
    assert (own_run.path / "models/dropout_conv/0-1/seed_0.pt").is_file()
    assert "up to date" in own_run.dvc("status").stdout
    own_run.dvc("exp", "apply", "conv03")  # and the experiment's outputs are still there
    assert "0.3" in (own_run.path / "params.yaml").read_text()


def _end_workers(proj) -> None:
    """Stop the queue's workers; kill any left after 30 s.  A worker told to shut down while
    its task finishes can stay up for good (a race in DVC's celery workers, seen here)."""
    import time

    import psutil

    proj.dvc("queue", "stop", check=False)
    deadline = time.time() + 30
    while time.time() < deadline:
        workers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if "queue-worker" in " ".join(p.info["cmdline"] or []) and _runs_in(p, proj.path)
        ]
        if not workers:
            return
        time.sleep(1)
    for p in workers:
        p.kill()


def _runs_in(process, path) -> bool:
    import psutil

    try:
        return str(path) in process.cwd()
    except psutil.Error:
        return False


def _queue_and_wait(proj, jobs: int, values: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Queue one experiment per name -> dropout_dense value, run the queue, wait for it.

    Returns name -> (dropout_dense param, loss of results/dropout_dense) per experiment.
    """
    import time

    for name, value in values.items():
        proj.dvc(
            "exp",
            "run",
            "--queue",
            "-n",
            name,
            "-S",
            f"variants.dropout_dense.dropout_dense={value}",
        )
    # The workers outlive `queue start`: with its output on a pipe, run() would wait for them.
    proj.dvc("queue", "start", "-j", str(jobs), capture=False)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            status = proj.dvc("queue", "status").stdout
            ended = sum(status.count(word) for word in ("Success", "Failed"))
            # Between two tasks a worker can list neither as queued nor running: wait until
            # every task has ended.
            if "Queued" not in status and "Running" not in status and ended >= len(values):
                break
            time.sleep(5)
    finally:
        _end_workers(proj)
    assert status.count("Success") >= len(values), status
    found = {}
    for commit in json.loads(proj.dvc("exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                if rev.get("name") in values:
                    variants = data["params"]["params.yaml"]["data"]["variants"]
                    metrics = data["metrics"]["results/dropout_dense/0-1/metrics.json"]["data"]
                    found[rev["name"]] = (
                        variants["dropout_dense"]["dropout_dense"],
                        metrics["loss"],
                    )
    return found


def test_queued_experiments_finish_with_their_own_metrics(own_run):
    found = _queue_and_wait(own_run, 1, {"dense01": 0.1, "dense04": 0.4})
    assert found.keys() == {"dense01", "dense04"}, found
    assert found["dense01"][0] == 0.1 and found["dense04"][0] == 0.4
    assert found["dense01"][1] != found["dense04"][1]  # each has metrics of its own run
    # Queued from a committed run, each retrains only the variant it changed.
    for name in found:
        log = own_run.dvc("queue", "logs", name).stdout
        ran = set(re.findall(r"Running stage '(train@[\w-]+)'", log))
        assert ran == {"train@dropout_dense-0-1"}, log


def test_two_queued_experiments_in_parallel(own_run):
    """`dvc queue start -j 2`: two workers at once, separate and correct metrics."""
    found = _queue_and_wait(own_run, 2, {"par015": 0.15, "par035": 0.35})
    assert found.keys() == {"par015", "par035"}, found
    assert found["par015"][0] == 0.15 and found["par035"][0] == 0.35
    assert found["par015"][1] != found["par035"][1]


def test_same_params_give_the_same_files_and_a_forced_rerun_changes_nothing(own_run):
    """On the CPU, a forced rerun of everything reproduces every output bitwise, checkpoints
    included: `dvc.lock` keeps every md5 and `git status` stays clean."""
    root = own_run.path
    files = sorted(
        p
        for p in [*root.glob("results/**/*"), *root.glob("runs/**/*"), *root.glob("models/**/*")]
        if p.is_file()
    )
    files += sorted(p for p in [*root.glob("compare/*"), root / "data/stats.json"] if p.is_file())
    assert len(files) > 8 * 6
    before = {f: f.read_bytes() for f in files}
    lock = (root / "dvc.lock").read_text()
    own_run.dvc("repro", "-f")
    assert {f: f.read_bytes() for f in files} == before
    assert (root / "dvc.lock").read_text() == lock
    assert own_run.git("status", "--porcelain") == ""


def test_a_committed_link_in_place_of_an_output_folder_writes_nothing_outside(own_run, tmp_path):
    """`compare` or `results/baseline` committed as a link to a folder elsewhere: `dvc repro`
    fails, the stage's one error line names the link, and the folder elsewhere is untouched
    (DVC does not delete the git-kept outputs first: they are `persist: true`)."""
    import shutil

    root = own_run.path
    for folder, inside in (("compare", "summary.json"), ("results/baseline", "0-1/metrics.json")):
        outside = tmp_path / folder.replace("/", "_")
        (outside / inside).parent.mkdir(parents=True)
        (outside / inside).write_text("theirs")
        shutil.rmtree(root / folder)
        (root / folder).symlink_to(outside, target_is_directory=True)
        out = own_run.dvc("repro", check=False)
        assert out.returncode != 0, out.stdout
        assert f"error: {folder} is a symbolic link (to {outside})" in out.stderr, out.stderr
        assert [p.relative_to(outside) for p in outside.rglob("*") if p.is_file()] == [Path(inside)]
        assert (outside / inside).read_text() == "theirs"
        (root / folder).unlink()
        own_run.git("checkout", "--", folder)


def test_two_fresh_clones_with_the_same_params_write_the_same_dvc_lock(full_run, tmp_path):
    """A second project, made and run from scratch elsewhere with the same params, records
    exactly the same dvc.lock: every dependency's and every output's md5."""
    other = make_project(tmp_path / "other")
    other.set_params(full_run.params())
    other.commit("the same params")
    other.dvc("repro")
    assert (other.path / "dvc.lock").read_text() == (full_run.path / "dvc.lock").read_text()


def test_train_stage_killed_mid_epoch_then_rerun(tmp_path):
    """SIGKILL in the middle of training: nothing is recorded as done, and a rerun completes."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from cifar10_tricks.testing import run_env

    proj = make_project(tmp_path, n_train=2000)
    raw = proj.params()
    raw["train"].update({"epochs": 40, "seeds": [0]})  # one block, of seed 0
    proj.set_params(raw)
    proj.commit("long run")
    proj.dvc("repro", "stats")
    env = run_env()
    dvc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "train@baseline-0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in dvc.stdout:
        seen.append(line)
        if "epoch 2/40" in line:
            break
    victims = [
        p
        for p in psutil.Process(dvc.pid).children(recursive=True)
        if "stages.train" in " ".join(p.cmdline())
    ]
    assert victims, "".join(seen)
    time.sleep(0.3)  # well inside epoch 3
    for p in victims:
        p.send_signal(signal.SIGKILL)
    rest = dvc.stdout.read()
    assert dvc.wait(timeout=60) != 0, rest
    assert not (tmp_path / "models/baseline/0/seed_0.pt").exists()
    assert "train@baseline-0" in proj.dvc("status", "train@baseline-0").stdout  # not done

    raw["train"]["epochs"] = 2  # finish quickly this time
    proj.set_params(raw)
    proj.dvc("repro", "evaluate@baseline-0")
    metrics = json.loads((tmp_path / "results/baseline/0/metrics.json").read_text())
    assert metrics["seeds"] == 1
    assert "up to date" in proj.dvc("status", "evaluate@baseline-0").stdout


# --- the plots page, offline ---------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # the network off: every request goes to a closed port, every name fails to resolve
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
    "--dump-dom",
)


def _render(page, profile) -> tuple[str, str]:
    """(the DOM after scripts ran, Chromium's log with the page's console messages)."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "needs headless Chromium (Debian: apt-get install chromium; .ci/run installs it)"
        )
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.stdout, proc.stderr


def _drawn(dom: str) -> int:
    """How many Vega views drew their marks (a canvas or an SVG each)."""
    return dom.count('class="marks"')


def test_plots_page_draws_every_chart_with_no_network(full_run, tmp_path):
    """`dvc plots show` uses the page with Vega inlined: every interactive chart draws offline,
    with no console error; DVC's default page (Vega from a CDN) draws none, as a control."""
    from dvc_render.html import PAGE_HTML

    out = tmp_path / "plots"
    full_run.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    charts = re.findall(r"vegaEmbed\('#([\w-]+)'", html)
    # The answer first: the forest plot, the slide's tricks (the blog's own: its rungs), every
    # seed's score, the curves, then the matrices.
    assert charts[:5] == [
        "compare_effects_csv",
        "compare_tricks_csv",
        "compare_seeds_csv",
        "test_accuracy_per_epoch",
        "test_loss_per_epoch",
    ], charts
    assert sorted(charts[5:]) == sorted(
        f"results_{n}_0-1_confusion_csv" for n in full_run.params()["study"]
    )
    assert "cdn.jsdelivr.net" not in html
    dom, log = _render(out / "index.html", tmp_path / "profile")
    assert _drawn(dom) == len(charts), log[-3000:]
    # A clean console: the inlined Vega matches the specs' version, and no template warns.
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert console == [], console

    default = tmp_path / "default.html"
    default.write_text(PAGE_HTML)
    full_run.dvc("plots", "show", "-o", str(tmp_path / "cdn"), "--html-template", str(default))
    assert "cdn.jsdelivr.net" in (tmp_path / "cdn/index.html").read_text()
    dom, _ = _render(tmp_path / "cdn/index.html", tmp_path / "profile-cdn")
    assert _drawn(dom) == 0  # offline, DVC's own page stays blank: the check above can fail


def test_plots_diff_page_draws_offline_too(full_run, tmp_path):
    full_run.dvc("plots", "diff", "HEAD", "-o", str(tmp_path / "diff"))
    html = (tmp_path / "diff/index.html").read_text()
    dom, log = _render(tmp_path / "diff/index.html", tmp_path / "profile")
    assert _drawn(dom) == html.count("vegaEmbed('#") > 0, log[-3000:]


# Runs in the page once the forest plot has drawn: from Vega's scenegraph, each rung's name and
# each effect label with its box in page coordinates (a group's marks are placed relative to the
# group), and the chart's height in pixels.
_FOREST = """.then(function (result) {
  var found = {rungs: [], labels: []};
  (function walk(node, x, y) {
    if (node.marktype === "text" && /^(rung_names|effect_labels)/.test(node.name || "")) {
      node.items.forEach(function (i) {
        var b = i.bounds, box = [b.x1 + x, b.y1 + y, b.x2 + x, b.y2 + y];
        if (!i.text) return;  // a row drawn once for both revisions labels once
        if (node.name.indexOf("rung_names") === 0) found.rungs.push({text: i.text, box: box});
        else found.labels.push({text: i.text, box: box});
      });
      return;
    }
    (node.items || []).forEach(function (i) {
      var group = !i.marktype && node.marktype === "group";
      walk(i, x + (group ? i.x || 0 : 0), y + (group ? i.y || 0 : 0));
    });
  })(result.view.scenegraph().root, 0, 0);
  found.height = document.querySelector("#compare_effects_csv").getBoundingClientRect().height;
  document.body.setAttribute("data-forest", JSON.stringify(found));
});"""


def _forest(project, revision: str, out: Path) -> dict:
    """`dvc plots diff <revision>` drawn offline: the forest plot's rung names and effect labels,
    each top to bottom, the pairs of them that overlap, and the chart's height."""
    project.dvc("plots", "diff", revision, "-o", str(out))
    page = out / "index.html"
    html = page.read_text()
    call = "vegaEmbed('#compare_effects_csv', spec);"
    assert call in html
    page.write_text(html.replace(call, call[:-1] + _FOREST))
    dom, log = _render(page, out / "profile")
    found = re.search(r'data-forest="([^"]+)"', dom)
    assert found, log[-3000:]
    forest = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    forest["overlaps"] = _overlaps(forest["rungs"] + forest["labels"])
    for kind in ("rungs", "labels"):  # top to bottom
        forest[kind] = [x["text"] for x in sorted(forest[kind], key=lambda x: x["box"][1])]
    return forest


def _effect_labels(effects_csv: str, suffix: str = "") -> dict[str, list[str]]:
    """Each rung's labels as the PNG writes them (charts.effect_label), in its order."""
    import csv
    import io

    from cifar10_tricks import charts

    labels: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(effects_csv)):
        row = {
            **row,
            **{k: float(row[k]) if row[k] != "" else "" for k in ("effect", "ci_low", "ci_high")},
        }
        labels.setdefault(row["variant"], []).append(charts.effect_label(row) + suffix)
    return labels


def _overlaps(labels: list[dict]) -> list[tuple[str, str]]:
    return [
        (a["text"], b["text"])
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if a["box"][0] < b["box"][2]
        and b["box"][0] < a["box"][2]
        and a["box"][1] < b["box"][3]
        and b["box"][1] < a["box"][3]
    ]


def test_plots_diff_marks_the_rungs_that_changed_in_a_forest_plot_that_fits_a_screen(
    own_run, tmp_path
):
    """The forest plot on the page says what the PNG says, in its order: each rung's labels,
    vs its parent (named) above vs the baseline.  In `dvc plots diff` a rung that changed is
    marked and drawn once per revision, the others once; with every rung changed (eight rungs,
    two revisions) the chart still fits one screen, and no two labels overlap."""
    variants = list(own_run.params()["study"])[1:]  # the baseline has no comparison
    committed = (own_run.path / "compare/effects.csv").read_text()
    same = _forest(own_run, "HEAD", tmp_path / "same")
    assert same["rungs"] == variants  # ladder order, nothing marked changed
    png = _effect_labels(committed)
    assert same["labels"] == [x for v in variants for x in png[v]] and same["overlaps"] == []
    assert all(len(png[v]) == 2 and "vs parent (" in png[v][0] for v in variants), png

    raw = own_run.params()
    raw["variants"]["dropout_dense"]["dropout_dense"] = 0.5
    own_run.set_params(raw)
    own_run.dvc("repro")
    one = _forest(own_run, "HEAD", tmp_path / "one")
    assert one["rungs"] == [v + " (changed)" if v == "dropout_dense" else v for v in variants]
    now = _effect_labels((own_run.path / "compare/effects.csv").read_text(), " · workspace")
    old = _effect_labels(committed, " · HEAD")
    # The changed rung: vs its parent, then vs the baseline, each in both revisions.
    (parent_then, baseline_then), (parent_now, baseline_now) = (
        old["dropout_dense"],
        now["dropout_dense"],
    )
    expect = {**png, "dropout_dense": [parent_then, parent_now, baseline_then, baseline_now]}
    assert one["labels"] == [x for v in variants for x in expect[v]] and one["overlaps"] == []

    raw["variants"]["baseline"]["lr"] = 0.004  # every rung's effect vs the baseline moves
    own_run.set_params(raw)
    own_run.dvc("repro")
    every = _forest(own_run, "HEAD", tmp_path / "every")
    assert every["rungs"] == [v + " (changed)" for v in variants]
    assert len(every["labels"]) == 2 * 2 * len(variants)
    assert every["overlaps"] == []
    assert every["height"] <= 900, every["height"]  # one screen; it was 2,200 px


# --- a team on one study: git for params and metrics, a DVC remote for data and models ------


def test_team_shares_runs_and_experiments_through_git_and_a_dvc_remote(tmp_path):
    """A runs the pipeline and pushes; B pulls and finds everything up to date, diffs A's
    branch, and sees A's experiment after `dvc exp pull`."""
    origin, storage = tmp_path / "origin.git", tmp_path / "storage"
    a = make_project(tmp_path / "a")
    a.run("git", "init", "-q", "--bare", "-b", "main", str(origin))
    raw = a.params()
    raw["train"].update({"epochs": 1, "seeds": ["0-1"]})
    raw["study"] = ["baseline", "norm_inputs"]  # the other variants stay defined, untrained
    raw["compare"]["parents"] = {}
    a.set_params(raw)
    a.dvc("remote", "add", "-d", "storage", str(storage))
    a.dvc("repro")
    a.commit("tiny study")
    a.dvc("push")
    a.git("remote", "add", "origin", str(origin))
    a.git("push", "-q", "-u", "origin", "main")

    b = Project(tmp_path / "b")
    a.run("git", "clone", "-q", str(origin), str(b.path))
    # A fresh clone draws A's charts before it has pulled or run anything: the page is in git.
    b.dvc("plots", "show", "-o", str(tmp_path / "b-plots"))
    assert "compare_effects_csv" in (tmp_path / "b-plots/index.html").read_text()
    b.dvc("pull")
    assert (b.path / "models/baseline/0-1/seed_1.pt").is_file() and (
        b.path / "page/dvc-plots.html"
    ).is_file()
    assert "up to date" in b.dvc("status").stdout
    assert "Running stage" not in b.dvc("repro").stdout
    assert (b.path / "compare/summary.json").read_text() == (
        a.path / "compare/summary.json"
    ).read_text()

    a.git("checkout", "-q", "-b", "faster-lr")
    raw["variants"]["norm_inputs"]["lr"] = 0.003
    a.set_params(raw)
    a.dvc("repro")
    a.commit("norm_inputs at lr 0.003")
    a.dvc("push")
    a.git("push", "-q", "origin", "faster-lr")
    b.git("fetch", "-q", "origin")
    diff = json.loads(b.dvc("metrics", "diff", "origin/faster-lr", "--json").stdout)
    assert diff["results/norm_inputs/0-1/metrics.json"] and not diff.get(
        "results/baseline/0-1/metrics.json"
    )
    # A clone that has pulled and run nothing diffs the two branches from git alone.
    c = Project(tmp_path / "c")
    a.run("git", "clone", "-q", str(origin), str(c.path))
    c.git("fetch", "-q", "origin", "faster-lr")
    diff = json.loads(c.dvc("metrics", "diff", "main", "origin/faster-lr", "--json").stdout)
    changed = diff["results/norm_inputs/0-1/metrics.json"]["micro_f1"]
    assert None not in (changed["old"], changed["new"]), changed
    c.dvc("plots", "diff", "main", "origin/faster-lr", "-o", str(tmp_path / "c-plots"))
    html = (tmp_path / "c-plots/index.html").read_text()
    assert "compare_effects_csv" in html and "origin/faster-lr" in html
    assert not (c.path / "data/cifar10.npz").exists() and not (c.path / "models/baseline").exists()

    a.git("checkout", "-q", "main")
    a.dvc("checkout")
    a.dvc("exp", "run", "-n", "dense-lr", "-S", "variants.baseline.lr=0.002")
    a.dvc("exp", "push", "origin", "dense-lr")
    b.dvc("exp", "pull", "origin", "dense-lr")
    shown = b.dvc("exp", "show", "--csv").stdout
    assert "dense-lr" in shown
    assert "0.002" in [line for line in shown.splitlines() if "dense-lr" in line][0]

    # A worker that never pulled the study (a cloud runner, say) runs an experiment: DVC pulls
    # only what the stages it runs read (the data file), skips the rest, and compare reads
    # files that git holds.  The experiment goes back through git and the DVC remote.
    out = c.dvc(
        "exp",
        "run",
        "--pull",
        "--allow-missing",
        "-n",
        "lean",
        "-S",
        "variants.norm_inputs.lr=0.004",
    )
    log = out.stdout + out.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {"train@norm_inputs-0-1", "evaluate@norm_inputs-0-1", "compare"}, log
    outputs = [*c.path.glob("models/**/*"), *c.path.glob("runs/**/*")]
    fetched = {p.relative_to(c.path).parts[:2] for p in outputs if p.is_file()}
    assert fetched == {("models", "norm_inputs"), ("runs", "norm_inputs")}  # nothing else
    c.dvc("exp", "push", "origin", "lean")
    b.dvc("exp", "pull", "origin", "lean")
    b.dvc("exp", "apply", "lean")
    for path in ("results/norm_inputs/0-1/metrics.json", "models/norm_inputs/0-1/seed_1.pt"):
        assert (b.path / path).read_bytes() == (c.path / path).read_bytes(), path
    assert "0.004" in (b.path / "params.yaml").read_text()
    # Without --allow-missing, `--pull` first takes every output of the stages it skips.
    d = Project(tmp_path / "d")
    a.run("git", "clone", "-q", str(origin), str(d.path))
    out = d.dvc("exp", "run", "--pull", "-S", "variants.norm_inputs.lr=0.004")
    assert set(re.findall(r"Running stage '([^']+)'", out.stdout)) <= ran, out.stdout
    assert (d.path / "models/baseline/0-1/seed_1.pt").is_file()
    assert (d.path / "results/norm_inputs/0-1/metrics.json").read_bytes() == (
        c.path / "results/norm_inputs/0-1/metrics.json"
    ).read_bytes()


# --- the README, run as written ----------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = sorted((README.parent / "docs").glob("*.md"))
SKIP = re.compile(r"<!-- not run by the README test: (.+?) -->\s*$")


def readme_blocks(page: Path = README) -> list[tuple[int, str, str | None]]:
    """Each ```bash block of ``page``: (line, text, why it is not run, or None)."""
    lines, blocks = page.read_text().splitlines(), []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            end = lines.index("```", i + 1)
            before = next((line for line in reversed(lines[:i]) if line.strip()), "")
            skip = SKIP.match(before)
            blocks.append((i + 1, "\n".join(lines[i + 1 : end]), skip.group(1) if skip else None))
            i = end
        i += 1
    return blocks


def test_every_readme_block_is_run_or_says_why_not():
    blocks = readme_blocks()
    run = [text.split()[:4] for _, text, why in blocks if why is None]
    assert run == [
        ["python", "-m", "venv", ".venv"],  # then pip install and `dvc repro`
        ["git", "add", "dvc.lock", "params.yaml"],  # commit the study
        ["dvc", "metrics", "show", "--precision"],  # branches
        ["git", "checkout", "--", "."],  # back to the study; experiments and the queue
    ], run
    assert all(len(why) > 10 for _, _, why in blocks if why)
    # The manual's blocks: each says why the README test does not run it, and which test runs
    # what it shows (none is cheap enough to run here: paths of your own, hours, a GPU, ...).
    manual = [(page.name, line, why) for page in DOCS for line, _, why in readme_blocks(page)]
    assert len(manual) >= 5 and all(why and "test" in why for *_, why in manual), manual
    # ... and the tests they name are there.
    for page, line, why in manual:
        named = re.findall(r"(test_\w+\.py)(?:::(\w+))?", why)
        assert named, (page, line, why)
        for file, function in named:
            source = (README.parent / "tests" / file).read_text()
            assert not function or f"def {function}(" in source, (page, line, file, function)


def test_the_readme_is_a_front_page():
    """At most 200 lines, install and run within the first 30, no line past 120 columns outside
    tables; the manual in docs/, every page linked from the README and back."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert any(line.startswith("dvc repro") for line in lines[:30])
    wide = [line for line in lines if len(line) > 120 and not line.startswith("|")]
    assert wide == [], wide
    for page in DOCS:
        assert f"(docs/{page.name})" in README.read_text(), page.name
        assert "(../README.md)" in page.read_text(), page.name


def test_every_test_the_readme_and_docs_name_is_there():
    """A test named as proof of a claim (`tests/<file>.py::<test>`, or `test_<name>` alone)
    exists: a renamed or moved test leaves no claim pointing at nothing."""
    tests = README.parent / "tests"
    defined = {
        m for f in tests.glob("test_*.py") for m in re.findall(r"def (test_\w+)\(", f.read_text())
    }
    missing = []
    for page in [README, *DOCS]:
        text = page.read_text()
        for file, function in re.findall(r"tests/(test_\w+\.py)::(test_\w+)", text):
            if f"def {function}(" not in (tests / file).read_text():
                missing.append((page.name, file, function))
        for function in re.findall(r"`(test_\w+)`", text):
            if function not in defined | {"test_batch", "test_vs_baseline"}:  # a file, a field
                missing.append((page.name, "?", function))
    assert missing == [], missing


def test_the_readme_runs_as_written(own_run, tmp_path):
    """Every README block not marked otherwise, as written and in order, on the tiny study a
    user would have just run and not yet committed (the install line aside)."""
    import time

    own_run.git("reset", "-q", "--mixed", "HEAD~1")  # the run, not yet committed or staged
    env_log = tmp_path / "block.log"
    outputs = []
    for line, text, why in readme_blocks():
        if why:
            continue
        install = ("python -m pip", "python -m venv")  # done: these tests run in that environment
        script = "\n".join(cmd for cmd in text.splitlines() if not cmd.startswith(install))
        with open(env_log, "w") as log:  # a file, not a pipe: `dvc queue start`'s workers hold it
            proc = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=own_run.path,
                env={**run_env(), "COLUMNS": "120"},
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        out = env_log.read_text()
        assert proc.returncode == 0, f"README line {line}:\n{script}\n{out[-3000:]}"
        outputs.append(out)
        if text.startswith("git add"):  # the commit line leaves nothing for git behind
            assert own_run.git("status", "--porcelain") == "", text
    repro, _, branches, experiments = outputs
    assert "Data and pipelines are up to date" in repro or "didn't change" in repro
    # `dvc metrics diff main` shows values on both sides for the changed variant only.
    rows = [r for r in branches.splitlines() if "results/dropout_conv/0-1/metrics.json" in r]
    assert rows and all(" - " not in r for r in rows), branches
    assert "variants.dropout_conv.dropout_conv" in branches  # params diff
    # cifar10-tricks diff main: the changed variant tested, paired, the other seven identical.
    row = next(r for r in branches.splitlines() if re.match(r"dropout_conv +[+-]\d", r))
    assert "2 seeds, paired" in row, branches
    assert "identical on every seed: 7 variant(s)" in branches
    assert (own_run.path / "plots/index.html").is_file()
    # The tables, at their natural width (DVC sizes a table to its content off a terminal):
    # `dvc metrics show`, a row per variant with means and sds, within 120 columns ...
    lines = branches.splitlines()
    top = next(i for i, r in enumerate(lines) if r.startswith("Path") and "micro_f1_sd" in r)
    table = list(itertools.takewhile(lambda r: r.startswith("results/"), lines[top + 1 :]))
    assert len(table) == 8, lines[top:]
    for col in ("micro_f1", "macro_f1", "loss"):
        assert re.search(rf"\b{col}\s+{col}_sd\b", lines[top]), lines[top]
    assert max(map(len, [lines[top], *table])) <= 120, [lines[top], *table]
    # ... and the README's `dvc exp show`: each experiment named, the knob it changed and the
    # micro-F1 that moved, nothing cut off, within 120 columns.
    block = next(text for _, text, why in readme_blocks() if not why and "dvc exp show" in text)
    show = next(c for c in block.splitlines() if c.startswith("dvc exp show")).split("  #")[0]
    knob, moved = "variants.dropout_conv.dropout_conv", "micro_f1.dropout_conv"
    assert _exp_table(experiments, knob, moved) == {"0.2", "0.3", "0.1"}  # main, branch, this
    try:  # the queue the README started: wait for it, as its comment says, then look
        deadline = time.time() + 600
        while "Queued" in (status := own_run.dvc("queue", "status").stdout) or "Running" in status:
            assert time.time() < deadline, status
            time.sleep(5)
    finally:
        _end_workers(own_run)
    assert status.count("Success") == 2, status
    assert own_run.git("status", "--porcelain", "--", "plots", "dvc_plots") == ""  # ignored
    again = subprocess.run(
        ["bash", "-c", show],
        cwd=own_run.path,
        env={**run_env(), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert _exp_table(again, knob, moved) == {"0.2", "0.3", "0.1", "0.4", "0.5"}
    # Queued from the clean study, each changed only what its -S said: nothing else carried over
    # from the experiment run before it.
    committed = yaml.safe_load(own_run.git("show", "HEAD:params.yaml"))
    swept = []
    for commit in json.loads(own_run.dvc("exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                knobs = (rev.get("data") or {}).get("params", {}).get("params.yaml", {})
                data = knobs.get("data") or {}
                value = data.get("variants", {}).get("dropout_conv", {}).get("dropout_conv")
                if value in (0.4, 0.5):
                    data["variants"]["dropout_conv"]["dropout_conv"] = 0.2
                    swept.append(data == committed)
    assert swept == [True, True], swept


def _exp_table(out: str, knob: str, moved: str) -> set[str]:
    """The `dvc exp show` table in ``out``: checks it is whole (no column cut to "…"), within
    120 columns, with exactly the columns Experiment, ``moved`` and ``knob``, every experiment
    named; returns the values of ``knob`` it shows."""
    lines = out.splitlines()
    head = next(
        i
        for i, r in enumerate(lines)
        if r.split()[:1] == ["Experiment"] and i > 0 and lines[i - 1].strip().startswith("─")
    )
    end = next(i for i in range(head + 2, len(lines)) if lines[i].strip().startswith("─"))
    table = lines[head - 1 : end + 1]
    assert max(map(len, table)) <= 120 and "…" not in "".join(table), "\n".join(table)
    assert lines[head].split() == ["Experiment", moved, knob], lines[head]
    rows = [r.split() for r in lines[head + 2 : end]]
    named = [r for r in rows if re.fullmatch(r"\[[a-z0-9-]+\]", r[-3])]
    assert len(named) == len(rows) - 2, "\n".join(table)  # all but workspace and the commit
    return {r[-1] for r in rows}


def test_an_identical_rerun_is_restored_from_the_run_cache(own_run):
    """A knob changed and changed back: DVC restores the train stage's outputs from its
    run-cache (no training); evaluate, whose outputs all live in git (so that compare runs in
    a clone that pulled nothing), scores them again; every output is as it was."""
    root = own_run.path
    files = sorted(
        [
            *root.glob("models/dropout_conv/0-1/*.pt"),
            root / "runs/dropout_conv/0-1/predictions.npz",
            root / "results/dropout_conv/0-1/metrics.json",
            root / "results/dropout_conv/0-1/report.json",
            root / "results/dropout_conv/0-1/confusion.csv",
            root / "compare/comparison.json",
        ]
    )
    before = {f: f.read_bytes() for f in files}
    raw = own_run.params()
    raw["variants"]["dropout_conv"]["dropout_conv"] = 0.3
    own_run.set_params(raw)
    first = own_run.dvc("repro")
    assert "epoch 1/1" in first.stdout + first.stderr  # trained
    raw["variants"]["dropout_conv"]["dropout_conv"] = 0.2
    own_run.set_params(raw)
    again = own_run.dvc("repro")
    out = again.stdout + again.stderr
    assert "Stage 'train@dropout_conv-0-1' is cached - skipping run" in out, out
    assert "epoch 1/1" not in out  # no training log line
    assert {f: f.read_bytes() for f in files} == before


# --- growing a study ---------------------------------------------------------------------------


def test_more_seeds_train_only_the_new_seeds_and_fewer_retrain_nothing(own_run):
    """train.seeds 0-1 -> [0-1, 2-3]: only the new block's stages and compare run, the old
    seeds' files stay byte for byte, and compare counts 4 seeds; back to [0-1]: nothing
    trains, and compare gives back exactly the 2-seed answer."""
    root = own_run.path
    old = sorted(
        p for p in [*root.glob("runs/*/0-1/**/*"), *root.glob("models/*/0-1/*")] if p.is_file()
    )
    assert len(old) > 8 * 3
    before = {f: f.read_bytes() for f in old}
    two = {f: (root / "compare" / f).read_bytes() for f in ("comparison.json", "comparison.md")}
    grow = json.loads(two["comparison.json"])["grow"]  # None where > 1,000 seeds are needed
    assert grow is None or grow["command"].startswith("dvc exp run -S 'train.seeds=[0-1,2-")
    assert grow is None or f"`{grow['command']}` adds them" in two["comparison.md"].decode()

    raw = own_run.params()
    raw["train"]["seeds"] = ["0-1", "2-3"]
    own_run.set_params(raw)
    out = own_run.dvc("repro")
    log = out.stdout + out.stderr
    ran = re.findall(r"Running stage '([^']+)'", log)
    variants = list(raw["study"])
    assert sorted(ran) == sorted(
        ["compare"] + [f"{kind}@{v}-2-3" for kind in ("train", "evaluate") for v in variants]
    ), ran
    trained = set(re.findall(r"train (\w+) seeds ([\d-]+):", log))  # the stage's own words
    assert trained == {(v, "2-3") for v in variants}, log
    assert {f: f.read_bytes() for f in old} == before
    table = json.loads((root / "compare/comparison.json").read_text())
    assert {row["seeds"] for row in table["variants"].values()} == {4}
    assert table["made_by"]["seeds"] == [0, 1, 2, 3]
    assert "| seed 3 |" in (root / "compare/comparison.md").read_text()

    raw["train"]["seeds"] = ["0-1"]
    own_run.set_params(raw)
    out = own_run.dvc("repro")
    ran = re.findall(r"Running stage '([^']+)'", out.stdout)
    assert ran == ["compare"], out.stdout
    assert {f: (root / "compare" / f).read_bytes() for f in two} == two
    # The dropped block's results are gone with it: nothing left to read as a current row.
    assert not list(root.glob("results/*/2-3")), "compare left the dropped block's results"
    assert "2-3" not in own_run.dvc("metrics", "show", "results/baseline/0-1/metrics.json").stdout
    assert "up to date" in own_run.dvc("status").stdout


def test_after_more_seeds_the_readmes_way_back_leaves_git_and_dvc_clean(own_run):
    """The README's more-seeds example as an experiment, then its way back to the committed
    study: no stray block in results/, `git status --porcelain` empty, `dvc status` clean."""
    way_back = next(
        line.split("  #")[0]
        for _, text, why in readme_blocks()
        if not why
        for line in text.splitlines()
        if "git clean" in line and "git checkout -q main" not in line
    )
    grown = own_run.dvc("exp", "run", "-S", "train.seeds=[0-1,2-3]")
    assert (own_run.path / "results/baseline/2-3/metrics.json").is_file(), grown.stdout
    own_run.run("bash", "-e", "-c", way_back)
    assert own_run.git("status", "--porcelain") == ""
    assert "up to date" in own_run.dvc("status").stdout
    assert not list(own_run.path.glob("results/*/2-3"))


def test_the_slide_study_runs_with_one_command_and_answers_each_trick_twice(own_run):
    """`cifar10-tricks study slide` on the committed tiny study: the 22 variants the blog's
    study lacks train (the blog's eight are reused), and comparison.md answers every trick of
    the slide on a bare model and taken out of the full recipe, in one Holm family."""
    import sys

    out = own_run.run(sys.executable, "-m", "cifar10_tricks.command", "study", "slide")
    log = out.stdout + out.stderr
    assert out.stderr.splitlines()[0].startswith("dvc exp run -S 'study=[baseline,norm_inputs,")
    p = own_run.params()
    blog, slide = p["studies"]["blog"], p["studies"]["slide"]
    trained = set(re.findall(r"Running stage 'train@(\w+)-0-1'", log))
    assert trained == set(slide) - set(blog), trained
    table = json.loads((own_run.path / "compare/comparison.json").read_text())
    assert list(table["variants"]) == slide
    assert set(table["tricks"]) == set(p["compare"]["tricks"])
    for trick, contexts in table["tricks"].items():
        assert set(contexts) == set(p["compare"]["tricks"][trick]), trick
    md = (own_run.path / "compare/comparison.md").read_text()
    assert "## LeCun's slide, trick by trick" in md and "- **Helps in both contexts:**" in md
    for trick in p["compare"]["tricks"]:
        assert f"- {trick}: " in md
    # One family: the trick pairs are the table's comparisons, counted once.
    assert table["comparisons"] == len(
        {
            frozenset((n, r[k]))
            for n, r in table["variants"].items()
            for k in r
            if k.startswith("vs_")
        }
    )


def test_the_paired_diff_marks_the_changed_variant_and_refuses_to_pair_other_epochs(own_run):
    """On the committed tiny study: an experiment that changed one variant is, against main,
    that variant alone, paired over its seeds; one that trained for more epochs is compared
    unpaired, saying why; both read from git and the experiments' refs alone."""
    import sys

    def diff(*revs):
        out = own_run.run(sys.executable, "-m", "cifar10_tricks.command", "diff", *revs, "--json")
        return json.loads(out.stdout)

    own_run.dvc("exp", "run", "-n", "dense05", "-S", "variants.dropout_dense.dropout_dense=0.5")
    own_run.git("checkout", "--", ".")
    own_run.dvc("checkout")
    own_run.dvc("exp", "run", "-n", "longer", "-S", "train.epochs=2")
    one = diff("main", "dense05")
    changed = [c for c in one["changes"] if c["verdict"] != "identical on every seed"]
    assert [c["variant"] for c in changed] == ["dropout_dense"], one
    assert changed[0]["paired"] and changed[0]["seeds"] == 2
    assert one["knobs"] == {"variants.dropout_dense.dropout_dense": [0.2, 0.5]}
    longer = diff("main", "longer")
    assert all(not c["paired"] for c in longer["changes"])
    assert all("epochs differ (1 vs 2)" in c["why_unpaired"] for c in longer["changes"])
