"""The package layers hold: no import cycle between FedShift's packages, and no edge that
the architecture forbids (docs/architecture.md, "Package map").

The graph is read from the source (``ast``), every ``import`` in a module counted, deferred
ones inside functions included: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fedshift"

#: package -> the FedShift packages it may import (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "findings": {"errors"},
    "config": {"errors"},
    "data": {"errors", "findings", "config"},
    "render": {"errors"},
    "shift": {"errors"},
    "secagg": {"errors"},
    # site-local adaptation of a package: above model, bundle, shift and inference; no
    # site runtime, run state or Flower (it runs at a hospital with no federation)
    "adapt": {
        "errors",
        "config",
        "atomic",
        "logs",
        "data",
        "model",
        "shift",
        "bundle",
        "inference",
    },  # fmt: skip
}
#: package -> the only packages that may import it (the entry points)
IMPORTED_ONLY_BY: dict[str, set[str]] = {"adapt": {"commands"}}
#: modules that make up the coordinator; none may reach the synthetic-data generator
COORDINATOR = ("fedshift.fl.server", "fedshift.fl.secure_rounds", "fedshift.fl.grid")
GENERATOR = "fedshift.data.synth."
#: the scenario's settings and the protocol tables they validate against: no generation
GENERATOR_ALLOWED = {"fedshift.data.synth.config", "fedshift.data.synth.protocol"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _package_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for src, dsts in _graph().items():
        for dst in dsts:
            a, b = _package(src), _package(dst)
            if a != b and b != "fedshift":  # `from fedshift import __version__`
                edges[a].add(b)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_cycle_between_packages() -> None:
    cycle = _cycle(_package_graph())
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_import_only_what_they_may() -> None:
    bad = [
        f"fedshift.{pkg} -> fedshift.{dst}"
        for pkg, dsts in _package_graph().items()
        if pkg in ALLOWED
        for dst in sorted(dsts - ALLOWED[pkg])
    ]
    assert not bad, "forbidden edges: " + ", ".join(bad)


def test_upper_packages_are_imported_only_from_above() -> None:
    bad = [
        f"fedshift.{src} -> fedshift.{dst}"
        for src, dsts in _package_graph().items()
        for dst in sorted(dsts)
        if dst in IMPORTED_ONLY_BY and src not in IMPORTED_ONLY_BY[dst]
    ]
    assert not bad, "imports from below: " + ", ".join(bad)


def test_flower_is_imported_only_in_fl() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in PKG.rglob("*.py")
        if not _module_name(p).startswith("fedshift.fl")
        and any(m == "flwr" or m.startswith("flwr.") for m in _imports(p))
    ]
    assert not offenders, f"Flower imported outside fedshift/fl: {offenders}"


def test_coordinator_never_reaches_the_synthetic_generator() -> None:
    graph = _graph()
    seen: set[str] = set()
    todo = [m for m in COORDINATOR if m in graph]
    assert todo, "the coordinator modules moved; update COORDINATOR"
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(graph.get(module, ()))
    reached = sorted(m for m in seen if m.startswith(GENERATOR) and m not in GENERATOR_ALLOWED)
    assert not reached, f"the coordinator imports the synthetic generator: {reached}"


def test_the_checker_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
