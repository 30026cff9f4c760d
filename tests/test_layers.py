"""Imports run one way: every module of vlmt imports only from its own layer or the layers below
it (docs/architecture.md), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vlmt"

# bottom to top; a unit may import itself and anything earlier in this list
LAYERS = [["errors"], ["io"], ["seeding"], ["config"], ["data"], ["metrics"], ["models"], ["tasks"], ["training"],
          ["inference"], ["reports"], ["experiments"], ["serve"], ["commands"], ["cli", "__main__", "__init__"]]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[tuple[str, int]]:
    """(unit of vlmt imported, line) for every import in the file, at any depth."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vlmt" and len(parts) > 1 and parts[1] in RANK:
                out.add((parts[1], node.lineno))
    return out


def test_every_module_imports_only_its_layer_and_the_layers_below():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = unit_of(path)
        assert unit in RANK or unit == "configs", f"{path}: not in a layer of docs/architecture.md"
        for imported, line in imported_units(path):
            if RANK[imported] > RANK[unit]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({unit}) imports vlmt.{imported}")
    assert not upward, "\n".join(upward)


def test_models_never_read_data_files():
    for path in (PACKAGE / "models").rglob("*.py"):
        assert not any(u == "data" for u, _ in imported_units(path)), path


def test_no_relative_imports():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: use absolute imports"
