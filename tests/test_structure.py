"""The structure of the code, read from the source with ``ast``. The import graph of ``bench`` and
``fer_models`` (imports inside functions and under ``TYPE_CHECKING`` count): no module imports
itself back through others, and every import goes down the layers docs/architecture.md names."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own package and anything in a package listed before it.
LAYERS = [
    "fer_models",
    "bench", "bench.errors", "bench.paths",
    "bench.data",
    "bench.results",
    "bench.families",
    "bench.training",
    "bench.sweep",
    "bench.reports",
    "bench.inference",
    "bench.perf",
    "bench.api",
    "bench.cli",
]


def _modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in ("bench", "fer_models"):
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of the two packages it imports (``from pkg import mod`` names the
    module; ``from mod import name`` the module)."""
    modules = _modules(root)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(known(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                targets.update(known(f"{base}.{a.name}") for a in node.names)
        graph[name] = {t for t in targets if t and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer(module: str) -> int:
    """The index in LAYERS of the longest entry that is ``module`` or a package above it."""
    best = max((entry for entry in LAYERS if module == entry or module.startswith(entry + ".")), key=len)
    return LAYERS.index(best)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer (a package importing its own parent packages is not one)."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer(b) > layer(a) and not (a + ".").startswith(b + "."))


def test_the_checks_see_a_loop_and_an_upward_import(tmp_path):
    for package, files in {"bench": {"__init__.py": "", "errors.py": "from bench.data import x\n",
                                     "data/__init__.py": "def f():\n    from bench.data.a import y\n",
                                     "data/a.py": "from . import b\n", "data/b.py": "from .a import z\n"},
                           "fer_models": {"__init__.py": ""}}.items():
        for rel, text in files.items():
            (tmp_path / package / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / package / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert import_cycles(graph) == [["bench.data.a", "bench.data.b"]]
    assert graph["bench.data"] == {"bench.data.a"}
    assert upward_imports(graph) == ["bench.errors -> bench.data"]


def test_no_import_loop():
    assert import_cycles(import_graph()) == []


def test_imports_go_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_api_is_a_thin_twin_of_the_cli():
    """``bench.api`` joins named steps of ``bench.sweep``; none of its functions grows past 40 lines."""
    tree = ast.parse((ROOT / "bench" / "api.py").read_text())
    long = [f"{n.name}: {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 40]
    assert long == []


def test_sweep_dataclasses_are_typed():
    """The plan and outcome types of a sweep name their fields' types (no ``object`` placeholders)."""
    untyped = []
    for path in sorted((ROOT / "bench" / "sweep").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                untyped += [f"{path.name}: {node.name}.{item.target.id}" for item in node.body
                            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                            and "object" in ast.unparse(item.annotation).split(" | ")]
    assert untyped == []
