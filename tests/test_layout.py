"""The layout: each stage's `deps` in dvc.yaml are exactly the project modules it imports, and
the stages that need no torch import nothing that imports it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stages"


def _direct_imports(module: str) -> set[str]:
    """Project modules (``stages.x``) and third-party roots ``module`` imports when it runs,
    function-local imports included; ``if TYPE_CHECKING:`` blocks left out."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "stages":  # from stages import cifar, params, STARTED
                found.update(
                    f"stages.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").is_file()
                )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def closure(module: str) -> set[str]:
    """Every name imported, transitively through the project's own modules, by stages.<module>."""
    seen, todo, names = set(), [module], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for name in _direct_imports(mod):
            names.add(name)
            if name.startswith("stages.") and name.count(".") == 1:
                todo.append(name.split(".")[1])
    return names | {f"stages.{m}" for m in seen}


def project_files(module: str) -> set[str]:
    mods = {n.split(".")[1] for n in closure(module) if n.startswith("stages.")}
    return {f"stages/{m}.py" for m in mods} | {"stages/__init__.py"}  # every import runs __init__


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


@pytest.mark.parametrize("name", list(_stages()))
def test_deps_are_exactly_the_modules_the_stage_imports(name):
    stage = _stages()[name]
    module = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
    assert module == name  # module name = stage name
    listed = {d for d in stage["deps"] if d.startswith("stages/")}
    assert listed == project_files(module), (
        f"dvc.yaml's {name} deps should list exactly {sorted(project_files(module))}"
    )


# download imports torchvision (its download_url and md5 check), inside the functions that fetch.
@pytest.mark.parametrize("module", ["stats", "evaluate", "compare", "page"])
def test_torch_free_stages_import_nothing_that_imports_torch(module):
    assert not {n for n in closure(module) if n.split(".")[0] in ("torch", "torchvision")}


def test_the_walk_sees_function_local_imports():
    """The check above would pass vacuously if the walk missed imports inside functions."""
    assert "stages" in _direct_imports("io")  # run_main's `from stages import STARTED`
    assert "torch" in closure("train") and "torchvision.datasets.utils" in closure("download")
