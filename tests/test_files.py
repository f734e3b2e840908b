"""Files: atomic writes and groups of them, stale temporaries, checked reads of upstream outputs."""

from __future__ import annotations

import errno

import pytest

from cifar10_tricks import files
from cifar10_tricks.errors import UserError


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"micro_f1": 0.5})
    with pytest.raises(OSError):
        with files.atomic_path(target) as tmp:
            tmp.write_text('{"micro_f1": 0.')  # half written, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == '{\n  "micro_f1": 0.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_path(tmp_path / "sub" / "model.pt") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list((tmp_path / "sub").iterdir()) == []


def test_missing_upstream_output_names_the_stage(tmp_path):
    with pytest.raises(UserError, match=r"run `dvc repro stats`"):
        files.read_json(tmp_path / "stats.json", "stats")


def test_stale_temporaries_of_a_killed_write_are_removed_by_the_next(tmp_path):
    stale = tmp_path / ".stats.json.k1ll3d.tmp"
    stale.write_text("half")
    other = tmp_path / ".other.json.x.tmp"
    other.write_text("not ours")
    files.write_json(tmp_path / "stats.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "stats.json"]


def test_a_group_of_writes_is_replaced_together_or_not_at_all(tmp_path):
    for name in ("a.json", "b.json", "c.json"):
        files.write_json(tmp_path / name, {"v": "old"})
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_group():
            files.write_json(tmp_path / "a.json", {"v": "new"})
            files.write_json(tmp_path / "b.json", {"v": "new"})
            raise KeyboardInterrupt  # Ctrl-C between the second and the third file
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        n: '{\n  "v": "old"\n}\n' for n in ("a.json", "b.json", "c.json")
    }
    with files.atomic_group():
        for name in ("a.json", "b.json", "c.json"):
            files.write_json(tmp_path / name, {"v": "new"})
        assert "old" in (tmp_path / "a.json").read_text()  # nothing renamed before the end
    assert all("new" in p.read_text() for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os

    files.write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize(
    "text, says",
    [
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"seeds": [Infinity]}', "Infinity is not a number JSON allows"),
        ('{"n": NaN}', "NaN is not a number JSON allows"),
        ('{"seeds": [' + "9" * 400 + "]}", "an integer of 400 digits"),
    ],
)
def test_hostile_json_is_one_clear_error_naming_the_stage(tmp_path, text, says):
    (tmp_path / "report.json").write_text(text)
    with pytest.raises(UserError, match=rf"{says}.*rerun `dvc repro -f evaluate@v-0-1`"):
        files.read_json(tmp_path / "report.json", "evaluate@v-0-1")


def test_json_past_its_size_cap_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "stats.json").write_text(" " * 2000 + "{}")
    with pytest.raises(UserError, match=r"2,002 bytes, more than the 1,000 it can hold"):
        files.read_json(tmp_path / "stats.json", "stats", max_bytes=1000)


def test_no_output_is_written_through_a_linked_folder(tmp_path, monkeypatch):
    """A committed symbolic link in place of an output folder (or of one above it): the write is
    refused, naming the link, and nothing lands outside the project."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "summary.json").write_text("theirs")
    project = tmp_path / "project"
    (project / "results").mkdir(parents=True)
    (project / "compare").symlink_to(outside, target_is_directory=True)
    (project / "results" / "baseline").symlink_to(outside, target_is_directory=True)
    monkeypatch.chdir(project)
    for target in ("compare/summary.json", "results/baseline/0-1/report.json"):
        link = target.rsplit("/", 2 if target.count("/") == 3 else 1)[0]
        with pytest.raises(UserError, match=rf"{link} is a symbolic link .*`rm {link}`"):
            files.write_json(target, {"micro_f1": 0.5})
        with pytest.raises(UserError, match="symbolic link"):
            files.write_json(project / target, {"micro_f1": 0.5})  # absolute, the same
    assert sorted(p.name for p in outside.iterdir()) == ["summary.json"]
    assert (outside / "summary.json").read_text() == "theirs"
    files.write_json("results/real/m.json", {})  # a real folder is written as ever
    assert (project / "results/real/m.json").is_file()


def test_a_failed_write_names_the_file_it_was_writing(tmp_path):
    with pytest.raises(OSError) as caught:
        with files.atomic_path(tmp_path / "comparison.md") as tmp:
            with open(tmp, "w") as f:
                f.write("x")
            raise OSError(errno.ENOSPC, "No space left on device")  # as f.write() raises it
    assert caught.value.filename == str(tmp_path / "comparison.md")
