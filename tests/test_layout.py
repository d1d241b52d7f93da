"""The shape of the code: no import cycles, the layers in their order, and imports without side effects.

The layers, lowest first: `bridge.core` (the neutral core), `bridge.platforms` (the seam adapters implement),
`bridge.serving` (HTTP), `bridge.commands` (the CLI). A module imports only from its own layer and those
below; adapters build on the core and the seam (and on `bridge.commands.common` for their sub-commands), and
never import one another. Function-level imports count: a cycle held apart by an import inside a function is
still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = ("bridge.core", "bridge.platforms", "bridge.serving", "bridge.commands")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("bridge", "adapters"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(path: Path) -> set[str]:
    """The project's modules whose definitions `path` imports, at any depth of its code: `from a.b import c`
    is `a.b.c` when that is a module, else `a.b` (a package's `__init__` runs first either way, which is no
    dependency of the importer on it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


GRAPH = {module: imports(path) - {module} for module, path in MODULES.items()}


def test_no_module_imports_itself_back():
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def layer(module: str) -> int | None:
    return next((i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")), None)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) is not None))
def test_a_layer_imports_only_itself_and_the_layers_below(module):
    above = {target for target in GRAPH[module] if (layer(target) or 0) > layer(module)}
    adapters = {target for target in GRAPH[module] if target.startswith("adapters")}
    assert not above, f"{module} imports from a higher layer: {sorted(above)}"
    assert not adapters, f"the core names no adapter: {module} imports {sorted(adapters)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("adapters.")))
def test_an_adapter_builds_on_the_core_and_the_seam_only(module):
    own = module.split(".")[1]
    for target in GRAPH[module]:
        if target.startswith("adapters."):
            assert target.split(".")[1] == own, f"{module} imports another adapter: {target}"
        elif layer(target) is not None:
            assert layer(target) <= 1 or target == "bridge.commands.common", f"{module} imports {target}"


def test_nothing_imports_the_command_line():
    importers = sorted(m for m, targets in GRAPH.items() if "bridge.commands.main" in targets)
    assert importers == ["bridge.__main__"]


def test_importing_any_module_changes_nothing_of_the_process(tmp_path):
    """No environment variable, logging handler or filter, `logging.lastResort`, file or folder: only what
    starts (a command) configures the process."""
    code = """
import importlib, logging, os, sys
def snapshot():
    loggers = [logging.getLogger()] + [l for l in logging.Logger.manager.loggerDict.values()
                                       if isinstance(l, logging.Logger)]
    return (dict(os.environ), {l.name: (list(l.handlers), list(l.filters)) for l in loggers if l.handlers or l.filters},
            logging.lastResort)
before = snapshot()
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name.partition(".")[0] != "ray":  # the `ray` extra
            raise
after = snapshot()
assert after == before, (after, before)
print("unchanged")
"""
    folder = tmp_path / "metrics"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    importable = sorted(m for m in MODULES if not m.endswith("__main__"))  # that one runs the command
    done = subprocess.run([sys.executable, "-c", code, *importable], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "unchanged", done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "an import made files or folders"
