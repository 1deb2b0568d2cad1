"""The layers read off the tree hold in the code: imports flow one way, and no module imports itself back.

    cli -> workflows -> {training, datagen, config, algos, data} -> sim -> deploy

Every import statement counts, including those inside functions (a lazy import hides a cycle from
the interpreter, not from the design).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deploy", "sim", "robo_offline")

# unit -> the units it may import (besides itself). A module belongs to the longest unit prefixing its name.
ALLOWED: dict[str, set[str]] = {
    "deploy": set(),
    "sim": {"deploy"},
    "robo_offline": set(),  # the package root: a docstring only
    "robo_offline.data": {"sim", "deploy"},
    "robo_offline.algos": {"robo_offline.data"},
    "robo_offline.training": {"robo_offline.algos", "robo_offline.data", "sim", "deploy"},
    "robo_offline.datagen": {"robo_offline.data", "sim", "deploy"},
    "robo_offline.config": {
        "robo_offline.algos",
        "robo_offline.data",
        "robo_offline.datagen",
        "robo_offline.training",
        "sim",
        "deploy",
    },
    "robo_offline.workflows": {
        "robo_offline.training",
        "robo_offline.datagen",
        "robo_offline.config",
        "robo_offline.algos",
        "robo_offline.data",
        "sim",
        "deploy",
    },
    "robo_offline.cli": {
        "robo_offline.workflows",
        "robo_offline.training",
        "robo_offline.datagen",
        "robo_offline.config",
        "robo_offline.data",
        "sim",
        "deploy",
    },
}
# Third-party packages a layer may use: deploy runs on a robot computer with torch alone.
# sim may import imageio lazily, for videos only (the optional `video` extra)
EXTERNAL = {"deploy": {"torch"}, "sim": {"torch", "numpy", "gymnasium", "mujoco", "tqdm", "imageio"}}


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> third-party top-level packages it imports)."""
    known = modules()
    internal: dict[str, set[str]] = {m: set() for m in known}
    external: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
                ]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES:
                    internal[module].add(_longest_known(name, known))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    external[module].add(top)
    return internal, external


def _longest_known(name: str, known: dict[str, Path]) -> str:
    parts = name.split(".")
    return next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known)


def unit(module: str) -> str:
    return max((u for u in ALLOWED if module == u or module.startswith(u + ".")), key=len)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if unit(d) != unit(m) and unit(d) not in ALLOWED[unit(m)] and unit(d) != "robo_offline"
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
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


def test_imports_flow_one_way():
    internal, _ = import_graph()
    assert upward_imports(internal) == []


def test_no_import_cycles():
    internal, _ = import_graph()
    assert cycles(internal) == []


def test_deploy_needs_torch_only_and_sim_no_training_stack():
    _, external = import_graph()
    for module, packages in external.items():
        allowed = EXTERNAL.get(unit(module).split(".")[0])
        if allowed is not None:
            assert packages <= allowed, f"{module} imports {sorted(packages - allowed)}"


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {
        "deploy.safety": {"sim.envs"},
        "sim.envs": set(),
        "robo_offline.algos.iql": {"robo_offline.data.replay"},
        "robo_offline.data.replay": {"robo_offline.algos.iql"},
    }
    assert upward_imports(graph) == ["deploy.safety -> sim.envs", "robo_offline.data.replay -> robo_offline.algos.iql"]
    assert cycles(graph) == [["robo_offline.algos.iql", "robo_offline.data.replay"]]
