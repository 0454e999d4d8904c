"""dnnexp's modules import one way: no cycle, and no module imports one of a layer above it.

The imports are read from the sources with ast, every one of them: those at the top of a
module and those inside functions (which run later, but still tie the two modules
together). Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dnnexp"

# The layers, lowest first: a module may import its own layer's modules and those of the layers
# below, never one above. A name is a module, or a package standing for all its modules.
LAYERS = [
    ["dnnexp.errors", "dnnexp.typos", "dnnexp.layout", "dnnexp.usage", "dnnexp.flat_config"],  # plain Python: what every layer may use
    ["dnnexp.config"],  # the schema and its checks: no TensorFlow, no files
    ["dnnexp.files", "dnnexp.folder_lock"],  # a run folder's files, read and written atomically, and its lock
    ["dnnexp.run_folder"],  # who owns a run or sweep folder, and what it may hold
    ["dnnexp.results"],  # tables, statistics and figures of finished runs: never Keras
    ["dnnexp.backend_setup"],  # the backend and threads of a job, settled before Keras loads
    ["dnnexp.keras_import"],  # Keras, imported once on the chosen backend
    ["dnnexp.engines"],  # what differs between TensorFlow and JAX
    ["dnnexp.data", "dnnexp.model", "dnnexp.optim", "dnnexp.speed", "dnnexp.compiled_models"],
    ["dnnexp.keras_checks"],  # builds the model's and the optimizer's Keras objects once
    ["dnnexp.resume", "dnnexp.diagnostics", "dnnexp.loggers", "dnnexp.transfer"],
    ["dnnexp.train", "dnnexp.lr_tools"],  # the modes a run can run
    ["dnnexp.modes"],  # which mode runs which function
    ["dnnexp.child_process"],  # a job on another backend, in a process of its own
    ["dnnexp.hydra_callbacks"],
    ["dnnexp.cli", "dnnexp.__main__"],  # the command
    ["dnnexp.api", "dnnexp"],  # the Python API, re-exported by the package
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The dnnexp module ``name`` loads: itself, or the package that holds it (``dnnexp.engines.engine``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported(module: str) -> set[str]:
    """The dnnexp modules ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(), module, package)


def imports_in(source: str, module: str, package: str) -> set[str]:
    """The dnnexp modules that ``source`` (of ``module`` in ``package``) imports, anywhere but under ``if TYPE_CHECKING``."""
    tree = ast.parse(source)
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name its module resolves to
        else:
            continue
        found |= {target for target in map(resolve, names) if target and target != module}
    return found


GRAPH = {module: imported(module) for module in MODULES}


def layer(module: str) -> int:
    for index, names in enumerate(LAYERS):
        if any(module == n or (n != "dnnexp" and module.startswith(n + ".")) for n in names):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py: add it where it belongs")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_in(graph, set(group)) for group in groups]


def cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path through ``group`` back to its first module, found breadth first."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {sorted(group)}")


def test_the_walker_finds_every_kind_of_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = """
from typing import TYPE_CHECKING
import dnnexp.errors
from . import stats
from ..files import write_atomic
from dnnexp.config import Config
if TYPE_CHECKING:
    from dnnexp.cli import main
def later():
    from dnnexp.engines import engine
"""
    found = imports_in(source, "dnnexp.results.render", "dnnexp.results")
    # At the top and in a function, absolute and relative, a module or a name in it; not under TYPE_CHECKING.
    assert found == {"dnnexp.errors", "dnnexp.results.stats", "dnnexp.files", "dnnexp.config", "dnnexp.engines"}


def test_no_module_imports_itself_back():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module):
    upward = sorted(target for target in GRAPH[module] if layer(target) > layer(module))
    assert not upward, f"{module} imports {', '.join(upward)} from a layer above its own (see LAYERS)"


def test_results_and_the_config_never_reach_keras():
    """``dnnexp-report`` and every config error answer without TensorFlow: nothing they import, at any depth, loads Keras."""
    keras_layer = layer("dnnexp.keras_import")
    for module in [m for m in MODULES if layer(m) in (layer("dnnexp.config"), layer("dnnexp.results"))]:
        reached, todo = set(), [module]
        while todo:
            for target in GRAPH[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        heavy = sorted(m for m in reached if layer(m) >= keras_layer)
        assert not heavy, f"{module} reaches {', '.join(heavy)}, which load Keras"
