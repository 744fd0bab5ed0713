"""When an install compiles the data path (build_support/backend.py): a wheel where it can,
an editable checkout only when asked, never when told not to; mypy is asked for only then."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "build_support" / "backend.py"


@pytest.fixture
def backend(monkeypatch):
    spec = importlib.util.spec_from_file_location("warden_build_backend", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("WARDEN_COMPILE", raising=False)
    return module


@pytest.mark.parametrize(("asked", "editable", "compiler", "compiles"), [
    ("", False, True, True),      # pip install . with a compiler: compiled
    ("", False, False, False),    # ... without one: plain Python
    ("", True, True, False),      # pip install -e .: the sources you edit are what runs
    ("1", True, False, True),     # asked for: compiled (and a failure fails the install)
    ("0", False, True, False),    # told not to
])
def test_when_an_install_compiles(backend, monkeypatch, asked, editable, compiler, compiles):
    monkeypatch.setenv("WARDEN_COMPILE", asked)
    monkeypatch.setattr(backend, "can_compile", lambda: compiler)
    assert backend.compiles(editable) is compiles


def test_mypy_is_a_build_requirement_only_when_compiling(backend, monkeypatch):
    monkeypatch.setattr(backend._setuptools, "get_requires_for_build_wheel", lambda c: [])
    monkeypatch.setattr(backend, "can_compile", lambda: False)
    assert backend.get_requires_for_build_wheel() == []
    monkeypatch.setattr(backend, "can_compile", lambda: True)
    assert backend.get_requires_for_build_wheel() == [backend.MYPY]


def test_this_machine_can_compile(backend):
    """CI compiles the data path on this machine; it must find a compiler and headers."""
    assert backend.can_compile()
