"""Imports run one way: every module of vlmt imports only from its own layer or the layers below
it (docs/architecture.md), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vlmt"

# bottom to top; a unit may import itself and anything earlier in this list
LAYERS = [["errors", "version"], ["io"], ["pictures"], ["seeding"], ["config"], ["data"], ["metrics"], ["models"],
          ["tasks"], ["training"], ["inference"], ["reports"], ["experiments"], ["serve"], ["commands"],
          ["cli", "__main__", "__init__"]]
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
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "vlmt":
            for alias in node.names:  # `from vlmt import x`: a unit, or a name of the package's __init__ (the top)
                out.add((alias.name if alias.name in RANK else "__init__", node.lineno))
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


def _code_strings(path: Path) -> list[tuple[str, int]]:
    """String constants of a module that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and ast.get_docstring(node, clean=False) is not None}
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_what_serves_a_trained_model_asks_the_tasks_and_names_no_task_type():
    """inference, training, serving and pictures learn what a task can do from its declared capabilities
    (`vlmt.tasks.capabilities`), never from a list of task types; only the tasks name their types."""
    from vlmt import config as C
    from vlmt.tasks import shipped  # noqa: F401

    types = set(C.TASKS.names())
    places = [*(PACKAGE / "inference").rglob("*.py"), *(PACKAGE / "training").rglob("*.py"),
              *(p for p in (PACKAGE / "serve").rglob("*.py") if p.name != "gallery.py"),  # gallery: a data key
              PACKAGE / "reports" / "visualize.py"]
    named = [f"{p.relative_to(PACKAGE)}:{line} {text!r}" for p in places for text, line in _code_strings(p)
             if text in types]
    assert not named, "\n".join(named)


def test_library_code_leaves_global_state_alone():
    """No pyplot (its global backend and current figure) and no global torch seed outside vlmt.seeding:
    a function's randomness comes from its own seed and leaves the caller's generators as they were."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and ("pyplot" in n) for n in names):
                    offences.append(f"{rel}:{node.lineno} imports pyplot")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if node.func.attr == "use" and isinstance(owner, ast.Name) and owner.id == "matplotlib":
                    offences.append(f"{rel}:{node.lineno} matplotlib.use")
                if (node.func.attr == "manual_seed" and isinstance(owner, ast.Name) and owner.id == "torch"
                        and rel.name != "seeding.py"):
                    offences.append(f"{rel}:{node.lineno} torch.manual_seed (use vlmt.seeding.seeded)")
    assert not offences, "\n".join(offences)

