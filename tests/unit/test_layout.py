"""The layout stays honest: no two parts of `warden/` import each other (counting top-level,
`TYPE_CHECKING` and function-local imports alike), and no file grows past 300 lines.

A part is a folder of `warden/` or a module at its top (`warden/exchange.py`, `routes.py`,
...). The parts form the request flow's layers (docs/architecture.md): each imports only
those below it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "warden"
MAX_LINES = 300

# The layers, lowest first (docs/architecture.md draws them). A part imports only parts of
# lower layers. (The command line's modules, cli.py and cli_*.py, are one part: `cli`.)
LAYERS = [
    {"warden", "errors", "compiled", "backoff", "whole_file"},
    {"config/"},
    {"stream/", "upstream/"},
    {"edge/"},
    {"exchange"},
    {"fleet/"},
    {"routing/", "guard/", "tenancy/"},
    {"record/", "settings"},
    {"forensics/", "observe/"},
    {"proxy/"},
    {"admission/"},
    {"admin/", "runtime"},
    {"routes", "audit/", "sim/"},
    {"app/"},
    {"run"},
    {"cli"},
    {"__main__"},
]


def part_of(module: str) -> str | None:
    """The part of `warden/` a module belongs to (None: not Warden's)."""
    names = module.split(".")
    if names[0] != "warden":
        return None
    if len(names) == 1:
        return "warden"
    return f"{names[1]}/" if (PACKAGE / names[1]).is_dir() else _module_part(names[1])


def _module_part(stem: str) -> str:
    return "cli" if stem.startswith("cli") else stem


def imported(path: Path) -> set[str]:
    """Every Warden module `path` imports, wherever the import statement is."""
    inside = ["warden", *path.relative_to(PACKAGE).parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = inside[:len(inside) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            # `from warden import x` / `from warden.fleet import recent`: x may be a module
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if (PACKAGE.joinpath(*module.split(".")[1:], alias.name)
                             .with_suffix(".py")).exists())
    return found


def import_graph() -> dict[str, dict[str, set[str]]]:
    """part -> {part it imports -> the files that do}."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).parts
        source = f"{relative[0]}/" if len(relative) > 1 else _module_part(path.stem)
        source = "warden" if source == "__init__" else source
        for module in imported(path):
            target = part_of(module)
            if target is not None and target != source:
                graph[source][target].add(str(path.relative_to(ROOT)))
    return graph


def test_no_two_parts_import_each_other():
    graph = import_graph()
    both_ways = sorted(
        f"{a} <-> {b}: {sorted(graph[a][b])} / {sorted(graph[b][a])}"
        for a in graph for b in graph[a] if a < b and a in graph.get(b, {}))
    assert not both_ways, "parts of warden/ that import each other:\n" + "\n".join(both_ways)


def layer_of(part: str) -> int:
    found = [n for n, layer in enumerate(LAYERS) if part in layer]
    assert found, f"{part} is in no layer: place it in LAYERS (and docs/architecture.md)"
    return found[0]


def test_every_part_imports_only_from_lower_layers():
    graph = import_graph()
    upward = sorted(f"{a} -> {b}: {sorted(graph[a][b])}" for a in graph for b in graph[a]
                    if layer_of(b) >= layer_of(a))
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """(The check above would pass vacuously if imports inside functions or under
    TYPE_CHECKING went unseen.)"""
    graph = import_graph()
    assert "proxy/" in graph["admission/"]          # top-level
    assert "exchange" in graph["fleet/"]            # under TYPE_CHECKING only
    assert "run" in graph["cli"]                    # inside functions only
    assert "edge/" in graph["exchange"]             # TYPE_CHECKING again, a module part


@pytest.mark.parametrize("folder", ["warden", "tests", "bench", "tools"])
def test_no_file_over_300_lines(folder):
    long = {str(path.relative_to(ROOT)): lines
            for path in sorted((ROOT / folder).rglob("*.py"))
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
