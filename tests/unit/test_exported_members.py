"""Every `syncer_core` module's `__all__` lists exactly its public names (after httpx).

A module's own public names are read from its source: the top-level
functions, classes and assignments whose names do not start with `_` (type
variables excepted), and, in a package `__init__`, the names it imports from
inside `syncer_core`. Each must be in `__all__`. `__all__` may also re-export a
name that any module imports from inside `syncer_core`, but nothing else:
imports of other libraries are not part of a module's API, nor is anything
bound under `if` or `try`. Modules are found with `pkgutil.walk_packages`, so
new ones are covered.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

import syncer_core
from tests.unit.helpers import core_module_names

_TYPE_VARIABLES = {"TypeVar", "ParamSpec", "TypeVarTuple"}


def _is_type_variable(value: ast.expr) -> bool:
    match value:
        case ast.Call(func=ast.Name(id=name) | ast.Attribute(attr=name)):
            return name in _TYPE_VARIABLES
        case _:
            return False


def _defined_names(node: ast.stmt) -> list[str]:
    match node:
        case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
            return [node.name]
        case ast.Assign(targets=targets, value=value) if not _is_type_variable(value):
            return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        case ast.AnnAssign(target=ast.Name(id=name), value=value) if value is not None:
            return [name]
        case _:
            return []


def _core_imports(node: ast.stmt) -> list[str]:
    match node:
        case ast.ImportFrom(module=module, level=level) if (
            level > 0 or (module or "").split(".")[0] == "syncer_core"
        ):
            return [alias.asname or alias.name for alias in node.names]
        case _:
            return []


def _public(names: set[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def own_public_names(module: ModuleType) -> set[str]:
    """The names `module`'s own source makes public (and so must export)."""
    path = Path(str(module.__file__))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {name for node in tree.body for name in _defined_names(node)}
    if path.name == "__init__.py":
        names |= {name for node in tree.body for name in _core_imports(node)}
    return _public(names)


def reexportable_names(module: ModuleType) -> set[str]:
    """Names `module` imports from inside `syncer_core` (it may re-export them)."""
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    return _public({name for node in tree.body for name in _core_imports(node)})


MODULES = [importlib.import_module(name) for name in core_module_names()]
WITH_ALL = [m for m in MODULES if hasattr(m, "__all__")]


def test_modules_with_all_are_found() -> None:
    assert syncer_core.reference in WITH_ALL
    assert syncer_core in WITH_ALL


@pytest.mark.parametrize("module", WITH_ALL, ids=lambda m: m.__name__)
def test_all_lists_exactly_the_public_names(module: ModuleType) -> None:
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    own = own_public_names(module)
    missing = sorted(own - set(exported))
    unknown = sorted(set(exported) - own - reexportable_names(module))
    assert not missing and not unknown, f"missing from __all__: {missing}; unknown: {unknown}"


@pytest.mark.parametrize("module", WITH_ALL, ids=lambda m: m.__name__)
def test_all_names_exist(module: ModuleType) -> None:
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_with_public_names_declares_all(module: ModuleType) -> None:
    if own_public_names(module):
        assert hasattr(module, "__all__"), f"{module.__name__} has public names but no __all__"
