"""The package layout (issue 14): one registry of the families, imports without a circle and
without late (function-level) imports, one ``__all__`` in ``__init__``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_rational
from torch_rational import families

PACKAGE_DIR = Path(torch_rational.__file__).resolve().parent
SUBMODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__")


def _package_imports(path: Path) -> tuple[set, list]:
    """(package modules imported at top level, package imports found inside functions/classes)."""
    tree = ast.parse(path.read_text())
    top, late = set(), []

    def targets(node) -> list:
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != "torch_rational":
                return []
            if node.level > 1:
                return []
            module = (node.module or "").removeprefix("torch_rational").lstrip(".")
            if module:
                return [module.split(".")[0]]
            return [a.name for a in node.names]  # from . import functional
        if isinstance(node, ast.Import):
            return [a.name.split(".")[1] for a in node.names if a.name.startswith("torch_rational.")]
        return []

    for node in tree.body:
        top.update(targets(node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                late.extend(f"{path.name}:{inner.lineno} imports {t}" for t in targets(inner))
    return top, late


def test_no_import_circle_and_no_late_imports():
    graph, late = {}, []
    for name in SUBMODULES:
        imports, found_late = _package_imports(PACKAGE_DIR / f"{name}.py")
        graph[name] = {m for m in imports if m in SUBMODULES}
        late += found_late
    assert not late, f"package imports inside functions (late imports): {late}"

    # Depth-first search for a back edge.
    state: dict = {}

    def visit(node: str, path: list) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import circle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in SUBMODULES:
        if name not in state:
            visit(name, [name])


def test_init_has_one_all_and_no_late_import():
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text())
    assigns = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AugAssign))
               and any(getattr(t, "id", None) == "__all__" for t in getattr(n, "targets", [getattr(n, "target", None)]))]
    assert len(assigns) == 1 and isinstance(assigns[0], ast.Assign), "one `__all__ = [...]`, no `__all__ +=`"
    last_import = max(i for i, n in enumerate(tree.body) if isinstance(n, (ast.Import, ast.ImportFrom)))
    assert last_import < tree.body.index(assigns[0]), "every import comes before __all__"
    for name in torch_rational.__all__:
        assert hasattr(torch_rational, name), name


# The modules of the former circle (plot <-> rewrite) and the registry they now share; the AST test
# above covers the import graph of every module without an interpreter each.
@pytest.mark.parametrize("module", ["families", "plot", "rewrite"])
def test_submodule_imports_first_in_a_fresh_interpreter(module):
    # The first import of a submodule decides the order in which the others load; a circle shows
    # up as an ImportError ("partially initialized module") for one of these orders.
    result = subprocess.run([sys.executable, "-c", f"import torch_rational.{module}"], env=os.environ.copy(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_registry_covers_every_family_and_finds_the_family_of_a_module():
    # Written out here, not read from the registry: a family missing from it must fail.
    expected = {"pau": torch_rational.PAU, "rpau": torch_rational.RPAU, "opau": torch_rational.OPAU,
                "hp1": torch_rational.HP1, "hp2": torch_rational.HP2, "rational": torch_rational.Rational,
                "era": torch_rational.ERA, "pwlu": torch_rational.PWLU}
    assert families.FAMILIES == expected
    for name, cls in expected.items():
        assert families.family_of(cls()) == name
        assert isinstance(cls(), families.LEARNABLE_TYPES)

    class MyPAU(torch_rational.PAU):
        pass

    assert families.family_of(MyPAU()) == "pau"
    assert families.family_of(nn.ReLU()) is None
    assert not isinstance(nn.ReLU(), families.LEARNABLE_TYPES)


def test_remember_init_stores_a_copy_for_plot():
    act = torch_rational.PAU()
    torch_rational.remember_init(act, replaced="ReLU")
    info = getattr(act, families.INIT_ATTR)
    with torch.no_grad():
        act.numerator.add_(1.0)
    assert info["replaced"] == "ReLU"
    assert torch.equal(info["state"]["numerator"] + 1.0, act.numerator.detach())
    assert torch_rational.remember_init is families.remember_init
