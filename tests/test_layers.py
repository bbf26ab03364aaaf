"""The package's layers (DESIGN.md "Architecture"): imports point only to the same or a lower layer.

``options`` sits below every layer: it is the one declaration of what a server
can be asked to do, read by servers (layer 4) and hosting (layer 5) alike.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import course_ws
from course_ws.hosting.catalogue import CATALOGUE

PACKAGE = Path(course_ws.__file__).parent
LAYERS = {
    "course_ws.options": 0,
    "course_ws.rfc6455": 1,
    "course_ws.chat": 2,
    "course_ws.fanout": 3,
    "course_ws.servers": 4,
    "course_ws.hosting": 5,
    "course_ws.clients": 6,
    "course_ws.bench": 6,
    "course_ws.lab": 6,
    "course_ws.load": 6,
    "course_ws.tooling": 6,
    "course_ws.cli": 6,
    "course_ws.__main__": 6,
    "course_ws": 6,
}
STACKS = ("websockets", "uvicorn", "starlette", "fastapi", "django", "channels", "daphne")
TEST_TOOLS = ("pytest", "_pytest", "nbval", "hypothesis", "playwright")


def layer(module: str) -> int:
    """The layer of ``module``: that of its longest prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> list[tuple[str, Path]]:
    found = [("course_ws", PACKAGE / "__init__.py")]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="course_ws."):
        relative = info.name.removeprefix("course_ws.").replace(".", "/")
        path = PACKAGE / relative / "__init__.py" if info.ispkg else PACKAGE / f"{relative}.py"
        found.append((info.name, path))
    return found


def imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions count too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import module` imports the module, not pkg
                full = f"{base}.{alias.name}"
                names.add(full if _is_module(full) else base)
    return names


MODULES = modules()


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_only_down(module: str, path: Path) -> None:
    own = layer(module)
    upward = sorted(
        name
        for name in imports(path, module)
        if name.startswith("course_ws") and _is_module(name) and layer(name) > own
    )
    assert not upward, f"{module} (layer {own}) imports from a higher layer: {upward}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_the_chat_core_and_protocol_import_no_stack_and_nothing_imports_test_tools(
    module: str, path: Path
) -> None:
    roots = {name.split(".")[0] for name in imports(path, module)}
    if layer(module) <= 2:
        assert not roots & set(STACKS), f"{module} imports a web stack: {roots & set(STACKS)}"
    if module != "course_ws.tooling.check_plugin":  # runs inside pytest, for exercise checks
        assert not roots & set(TEST_TOOLS), f"{module} imports a test tool"


def test_every_public_module_in_servers_is_a_catalogue_entry() -> None:
    public = {
        name
        for name, _ in MODULES
        if name.startswith("course_ws.servers.")
        and not any(part.startswith("_") for part in name.split(".")[2:])
    }
    assert public == {entry.module for entry in CATALOGUE.values()}


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module of the package (not ``module.attribute``)."""
    relative = name.removeprefix("course_ws").lstrip(".").replace(".", "/")
    return (
        not relative
        or (PACKAGE / f"{relative}.py").exists()
        or (PACKAGE / relative / "__init__.py").exists()
    )


BLOCK_TEST_TOOLS = """
import importlib, sys

class NoTestTools:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tools!r}:
            raise ImportError(f"{{name}} is a test tool: the runtime must not import it")

sys.meta_path.insert(0, NoTestTools())
for module in {modules!r}:
    importlib.import_module(module)
print("imported", len({modules!r}))
"""


def test_every_server_and_the_cli_import_without_the_dev_extra() -> None:
    """``course-ws serve`` and ``doctor`` must work on an install without pytest and friends."""
    modules = ["course_ws", "course_ws.cli", *(entry.module for entry in CATALOGUE.values())]
    code = BLOCK_TEST_TOOLS.format(tools=TEST_TOOLS, modules=modules)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(modules)}"
