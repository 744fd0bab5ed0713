"""The compiled data path's rules (warden/compiled.py), checked on the sources, so that a change
that would break the compiled build (or make it crash) fails here, interpreted too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from warden import compiled

ROOT = Path(compiled.__file__).parent.parent


def _classes() -> dict[str, list[ast.ClassDef]]:
    return {path: [node for node in ast.walk(ast.parse((ROOT / path).read_text()))
                   if isinstance(node, ast.ClassDef)]
            for path in compiled.MODULES}


def test_every_listed_module_exists_and_is_named_right():
    assert all((ROOT / path).is_file() for path in compiled.MODULES)
    assert "warden.proxy.relay" in compiled.module_names()
    assert compiled.describe() in ("compiled", "interpreted")  # never a partial build


def test_no_compiled_class_derives_from_a_python_class():
    """A native class derives only from another class of the compiled modules (or is a
    typing Protocol): with a Python base it would not override its class attributes, and
    would crash when weakly referenced."""
    native = {cls.name for classes in _classes().values() for cls in classes}
    wrong = [f"{path}: {cls.name}({ast.unparse(base)})"
             for path, classes in _classes().items() for cls in classes for base in cls.bases
             if ast.unparse(base) not in native and ast.unparse(base) != "Protocol"]
    assert wrong == []


@pytest.mark.parametrize("path", compiled.MODULES)
def test_deleted_attributes_are_declared_deletable(path):
    """`del self.x` in a native class needs `x` in the class's `__deletable__`."""
    for cls in _classes()[path]:
        deleted = {target.attr for node in ast.walk(cls) if isinstance(node, ast.Delete)
                   for target in node.targets if isinstance(target, ast.Attribute)}
        declared: set[str] = set()
        for node in cls.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__deletable__" for t in node.targets):
                declared |= set(ast.literal_eval(node.value))
        assert deleted <= declared, (cls.name, deleted - declared)
