"""The package's floors: imports go one way (no cycle), faces do not import each other, models do
no I/O. The import graph is read from the source (``ast``), every ``import`` counted wherever it
sits (module level or inside a function), except under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "reelrec"

#: edges that exist today and are removed by the pre-trained-weights change (issue 14 step 2: models
#: do no I/O, training/pretrained.py loads the other run); delete an entry when its edge is gone
ALLOWED_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported reelrec module: line}}`` for every module of the package."""
    mods = modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in mods else origin)
            for target in targets:
                if target in mods and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle (as a closed path of module names), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if (node, nxt) in ALLOWED_EDGES:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    graph = import_graph()
    # persistence.py (Recommender.save/load) imports artifacts only inside its functions
    assert "reelrec.artifacts" in graph["reelrec.persistence"]
    assert "reelrec.data.dataset" in graph["reelrec.data"]
    assert find_cycle({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


CLI = ("reelrec.cli", "reelrec.cli_args")


def test_faces_do_not_import_the_cli() -> None:
    graph = import_graph()
    offenders = [
        f"{m} (line {edges[cli]})"
        for m, edges in graph.items()
        for cli in CLI
        if cli in edges and m not in (*CLI, "reelrec.__main__")
    ]
    assert not offenders, "only __main__ may import the CLI: " + ", ".join(offenders)


def test_models_do_no_io() -> None:
    graph = import_graph()
    offenders = [
        f"{m} (line {edges['reelrec.artifacts']})"
        for m, edges in graph.items()
        if m.startswith("reelrec.models")
        and "reelrec.artifacts" in edges
        and (m, "reelrec.artifacts") not in ALLOWED_EDGES
    ]
    assert not offenders, "models must not import artifacts: " + ", ".join(offenders)


def test_only_the_cli_parses_arguments() -> None:
    """No ``argparse.Namespace`` is built outside the CLI: the layers below take typed values."""
    graph_sources = modules()
    offenders = [
        name
        for name, path in graph_sources.items()
        if name not in CLI and "argparse" in path.read_text(encoding="utf-8")
    ]
    assert not offenders, "argparse outside the CLI: " + ", ".join(offenders)


def _model_names() -> set[str]:
    from reelrec.models.registry import COMPOSITE, MODELS

    return set(MODELS) | set(COMPOSITE)


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def name_conditions(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` of every comparison (``==``, ``!=``, ``in``, ``not in``) with a model name."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        for side in [node.left, *node.comparators]:
            found += [(node.lineno, s) for s in _strings(side) if s in names]
    return found


def test_the_name_check_finds_name_conditions() -> None:
    names = {"mf", "popularity"}
    tree = ast.parse('a = x == "mf"\nb = y not in ("bias", "popularity")\nc = "mf" in z\nd = {"mf": 1}')
    assert name_conditions(tree, names) == [(1, "mf"), (2, "popularity"), (3, "mf")]


def test_no_model_name_in_a_condition_outside_the_models() -> None:
    """Capabilities (``ranks_by_rating``, ``folds_in``, ``composite``, ...) say what a model
    can do; a model's name is compared only in the registry and the models' own files."""
    names = _model_names()
    offenders = [
        f"{name}:{line} ({model})"
        for name, path in modules().items()
        if not name.startswith("reelrec.models")
        for line, model in name_conditions(ast.parse(path.read_text(encoding="utf-8")), names)
    ]
    assert not offenders, "model names in conditions: " + ", ".join(offenders)


def test_runs_are_trained_and_saved_in_one_place() -> None:
    """``Recommender.train`` is called by ``runs.train.train_run`` alone and a ``.save`` (other
    than numpy's) by ``runs.train.save_run`` alone."""
    callers: dict[str, list[str]] = {"train": [], "save": []}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            if node.func.attr == "train" and isinstance(target, ast.Name) and target.id == "Recommender":
                callers["train"].append(name)
            if node.func.attr == "save" and not (isinstance(target, ast.Name) and target.id == "np"):
                callers["save"].append(name)
    assert callers == {"train": ["reelrec.runs.train"], "save": ["reelrec.runs.train"]}
