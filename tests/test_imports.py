"""The package's import graph: no circles, `bortzoo.cli` imported by nothing, every module importable on its own.

The graph is read from the source (every `import`, at module level or inside a function, that names a bortzoo
module), so a circle hidden behind a lazy import is caught too. A parent package's `__init__` is not an edge:
Python runs it first for any submodule, and `bortzoo/__init__.py` imports nothing that imports back.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "bortzoo"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "assets" not in parts:
            found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module → the bortzoo modules it imports (a `from M import name` counts M.name when that is a module)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in mods else base)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_nothing_imports_the_command_line_back():
    importers = sorted(name for name, targets in import_graph().items() if "bortzoo.cli" in targets)
    assert importers == []


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "bortzoo.extract.search" in graph["bortzoo.cli"]  # imported inside a function
    assert "bortzoo.serve.optimize" in graph["bortzoo"]


# Third-party libraries the package's modules import, loaded once before the fork so each child pays only for
# bortzoo's own modules.
HEAVY = ("torch", "transformers", "lightning", "datasets", "torchmetrics", "jsonargparse", "huggingface_hub",
         "gradio", "matplotlib.pyplot", "tokenizers", "yaml", "safetensors.torch")

CHILD = r"""
import importlib, os, sys, traceback
for name in HEAVY:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
failed = []
for module in MODULES:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(module)
print("FAILED:" + ",".join(failed))
"""


def test_every_module_imports_on_its_own_in_a_fresh_process():
    names = sorted(modules())
    code = f"HEAVY = {HEAVY!r}\nMODULES = {names!r}\n" + CHILD
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0 and last == "FAILED:", done.stderr[-4000:]
    assert len(names) > 60
