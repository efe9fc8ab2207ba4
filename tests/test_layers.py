"""Layers only look down, and no module imports itself round a cycle: checked by parsing every import.

From the bottom up (a module may import its own layer and the layers below):

* foundation: ``memsched`` (the version), ``errors``, ``text``, ``proc``, ``locate``, ``paths``, ``statefile``
* ``cron``: cron expressions parsed and translated to calendars, pure (config validates
  with it, so it sits below config; predictions that ask systemd are in ``systemd``)
* ``config``
* state: ``registry``, ``store``, ``metrics``, ``late`` (when a job is late, which metrics and status share)
* ``summarize`` (summaries are made of the store's events and bullets; building takes its
  segment summarizer as an argument from the ingest or rollup that runs it)
* ``systemd``: units, the manager, systemd-analyze
* ``jobs``: what a run does
* ``ops``: the decisions behind every command
* ``facade``: the gRPC server and client
* ``cli``, ``__main__``: parse and print

Every import counts, also those inside functions (a lazy import is still a dependency).
The store and summarize have a stricter list of their own (ALLOWED): the store imports
nothing but the foundation, not even config.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import memsched

PACKAGE = Path(memsched.__file__).parent
LAYERS: tuple[tuple[str, ...], ...] = (
    ("memsched", "memsched.errors", "memsched.text", "memsched.proc", "memsched.locate", "memsched.paths", "memsched.statefile"),
    ("memsched.cron",),
    ("memsched.config",),
    ("memsched.registry", "memsched.store", "memsched.metrics", "memsched.late"),
    ("memsched.summarize",),
    ("memsched.systemd",),
    ("memsched.jobs",),
    ("memsched.ops",),
    ("memsched.facade",),
    ("memsched.cli", "memsched.__main__"),
)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if "_generated" in path.parts:  # protoc's output imports only itself and protobuf
            continue
        parts = ("memsched", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Return module -> the memsched modules it imports (``from pkg import mod`` resolved to the module)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{module}: relative import (line {node.lineno}); spell memsched.… out")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "memsched":
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] == "memsched"]
            for name in names:
                target = _resolve(name, modules)
                if target and target != module:
                    graph[module].add(target)
    return graph


def layer_of(module: str) -> int:
    """Return the index in LAYERS of the longest layer prefix of ``module``. Raises KeyError for none."""
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise KeyError(module)
    return best[0]


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in _modules():
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"put these in a layer of LAYERS: {unplaced}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Return one line per import of a higher layer."""
    return sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the groups of modules that import each other (strongly connected components, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_layers_only_look_down() -> None:
    graph = import_graph()
    assert sum(map(len, graph.values())) > 200, "the parser found too few imports to be reading the code"
    assert "memsched.ops.status" in graph["memsched.cli.jobs"]  # lazy imports inside functions are seen
    violations = upward_imports(graph)
    assert not violations, "\n".join(violations)


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_checks_find_an_upward_import_and_a_cycle() -> None:
    """Not vacuous: the real graph with one upward import and one cycle added fails both checks."""
    graph = import_graph()
    graph["memsched.ops.units"].add("memsched.facade.server")
    graph["memsched.cli.remote"].add("memsched.cli.jobs")
    assert upward_imports(graph) == ["memsched.ops.units (layer 7) imports memsched.facade.server (layer 8)"]
    assert ["memsched.cli.jobs", "memsched.cli.remote"] in import_cycles(graph)


# what each package may import from memsched (module prefixes), besides itself
ALLOWED = {
    "store": ("memsched.errors", "memsched.paths", "memsched.text", "memsched.statefile"),
    "summarize": ("memsched.errors", "memsched.text", "memsched.store", "memsched.config"),
}


def memsched_imports(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) of every memsched import in ``path``, at any depth (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "memsched"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "memsched":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; memsched uses absolute ones")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    own = f"memsched.{package}"
    allowed = (own, *ALLOWED[package])
    modules = sorted((PACKAGE / package).rglob("*.py"))
    assert modules, package
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
        for path in modules
        for line, module in memsched_imports(path)
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
    ]
    assert upward == []
