"""The layout: `stages/` holds exactly what dvc.yaml runs, the library the rest; each stage's `deps`
in dvc.yaml are exactly the project modules it imports (``TYPE_CHECKING`` imports included); no
import cycle; no module named like the standard library's; the torch-free stages import nothing
that imports torch; tests do not lean on benchmarks; every module has its test file."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "cifar10_tricks")
STAGES = ("download", "stats", "train", "evaluate", "compare", "page")


def _file(module: str) -> Path:
    """``stages.train`` -> stages/train.py; a package -> its __init__.py."""
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _modules(package: str) -> list[str]:
    return sorted(
        f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py") if p.stem != "__init__"
    )


def _direct_imports(module: str) -> set[str]:
    """Every name ``module`` imports, function-local and ``if TYPE_CHECKING:`` imports included:
    a module named in a type hint is still a module the code depends on."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_file(module).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module in PACKAGES:  # from cifar10_tricks import cifar, params
                found.update(
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if _file(f"{node.module}.{a.name}").is_file()
                )
    return found


def _project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES and _file(name).is_file()


def closure(module: str) -> set[str]:
    """Every name imported, transitively through the project's own modules, by ``module``."""
    seen, todo, names = set(), [module], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for name in _direct_imports(mod):
            names.add(name)
            if _project(name):
                todo.append(name)
    return names | seen


def project_files(module: str) -> set[str]:
    """The files dvc.yaml should list for ``module``: every project module it reaches, and the
    __init__.py of each package on the way (every import runs it)."""
    mods = {n for n in closure(module) if _project(n) and n not in PACKAGES}
    files = {str(_file(m).relative_to(ROOT)) for m in mods}
    return files | {f"{m.split('.')[0]}/__init__.py" for m in mods}


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


def test_stages_holds_the_six_stages_and_nothing_else():
    assert sorted(p.name for p in (ROOT / "stages").glob("*.py")) == sorted(
        [f"{s}.py" for s in STAGES] + ["__init__.py"]
    )
    assert sorted(_stages()) == sorted(STAGES)


@pytest.mark.parametrize("name", list(_stages()))
def test_deps_are_exactly_the_modules_the_stage_imports(name):
    stage = _stages()[name]
    module = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
    assert module == name  # module name = stage name
    listed = {d for d in stage["deps"] if d.split("/")[0] in PACKAGES}
    want = project_files(f"stages.{module}")
    assert listed == want, f"dvc.yaml's {name} deps should list exactly {sorted(want)}"


def test_no_import_cycle_anywhere():
    """Project modules form a DAG, counting every import (TYPE_CHECKING and local ones too)."""
    graph = {
        m: {n for n in _direct_imports(m) if _project(n) and n not in PACKAGES}
        for p in PACKAGES
        for m in _modules(p)
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, "import cycle: " + " -> ".join(path + [m])
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = 2

    for m in graph:
        visit(m, [])


def test_no_module_is_named_like_a_standard_library_module():
    names = {m.rsplit(".", 1)[1] for p in PACKAGES for m in _modules(p)} | set(PACKAGES)
    assert not names & set(sys.stdlib_module_names)


# download imports torchvision only for its md5 helpers (check_md5, calculate_md5), inside the
# functions that check an archive; it is not in this list.
@pytest.mark.parametrize("module", ["stats", "evaluate", "compare", "page"])
def test_torch_free_stages_import_nothing_that_imports_torch(module):
    assert not {
        n for n in closure(f"stages.{module}") if n.split(".")[0] in ("torch", "torchvision")
    }


def test_tests_do_not_import_benchmarks():
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == "test_benchmarks.py":  # the benchmarks' own tests
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) benchmarks\b", text, re.M), path.name


def test_every_module_has_its_test_file():
    """tests/test_<module>.py for every stage and library module with logic."""
    no_logic = {"cifar10_tricks.testing"}  # the tests' own fixture: the e2e tests use it
    missing = [
        m
        for p in PACKAGES
        for m in _modules(p)
        if m not in no_logic and not (ROOT / "tests" / f"test_{m.rsplit('.', 1)[1]}.py").is_file()
    ]
    assert not missing


def test_the_walk_sees_function_local_and_type_checking_imports(tmp_path, monkeypatch):
    """The checks above would pass vacuously if the walk missed imports inside functions or
    under ``if TYPE_CHECKING:``."""
    assert "signal" in _direct_imports("cifar10_tricks.cli")
    assert "torch" in closure("stages.train")
    assert "torchvision.datasets.utils" in closure("stages.download")
    fake = tmp_path / "stages"
    fake.mkdir()
    (fake / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from stages.y import Z\n"
        "def f():\n    import torch\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert {"stages.y", "torch"} <= _direct_imports("stages.x")


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_help_names_its_command_and_every_argument(stage, capsys):
    """`python -m stages.<name> --help` says how it is run, and every argument says what it is."""
    import importlib

    module = importlib.import_module(f"stages.{stage}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m stages.{stage} ")
    options = text.split("options:", 1)[1]
    for entry in re.split(r"\n  (?=-)", options)[1:]:
        flag, _, rest = entry.strip().partition("  ")
        assert rest.strip() or "\n" in entry, f"{stage}: {flag} has no help"
