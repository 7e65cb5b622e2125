"""The package's folders are layers: each imports only from its own layer or the ones below it,
and no module takes part in an import cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ray_nas"

#: lowest first; a module belongs to the first entry that is a prefix of its dotted name
LAYERS: list[tuple[str, ...]] = [
    ("ray_nas.errors", "ray_nas.digest"),
    ("ray_nas.training", "ray_nas.analysis"),
    ("ray_nas.spaces", "ray_nas.algorithms"),
    ("ray_nas.store", "ray_nas.criteria", "ray_nas.tables"),
    ("ray_nas.config",),
    ("ray_nas.search",),
    ("ray_nas.offline",),
    ("ray_nas.tracking", "ray_nas.report"),
    ("ray_nas.api", "ray_nas.cli", "ray_nas.examples", "ray_nas"),
]


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "ray_nas"):
            return i
    assert module == "ray_nas", f"{module} is in no layer: add it to LAYERS"
    return len(LAYERS) - 1


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the ray_nas modules it imports (a name imported from a package counts as the
    submodule when one exists; imports under `if TYPE_CHECKING:` do not count)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]  # fmt: skip
            else:
                continue
            for target in targets:
                found = resolve(target) if target.startswith("ray_nas") else None
                if found and found != mod:
                    graph[mod].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_go_down_the_layers():
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in import_graph().items()
        for b in targets
        if layer_of(b) > layer_of(a) and not (a == "ray_nas" or b == "ray_nas")
    ]
    assert upward == []


def test_the_check_sees_function_local_imports_and_cycles():
    graph = {"ray_nas.a": {"ray_nas.b"}, "ray_nas.b": {"ray_nas.c"}, "ray_nas.c": {"ray_nas.a"}}
    assert cycles(graph) == [["ray_nas.a", "ray_nas.b", "ray_nas.c"]]
    # cli imports its command bodies inside functions: the graph has those edges
    assert "ray_nas.cli.commands" in import_graph()["ray_nas.cli"]
