"""When an install compiles the data path (build_support/backend.py): a wheel where it can,
an editable checkout only when asked, never when told not to; mypy is asked for only then.
How a compiled build is guided by a profile (build_support/guided.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "build_support" / "backend.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def backend(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))   # (as PEP 517's backend-path does)
    module = _load("warden_build_backend", PATH)
    monkeypatch.delenv("WARDEN_COMPILE", raising=False)
    monkeypatch.delenv("WARDEN_PGO", raising=False)
    return module


@pytest.fixture
def guided(monkeypatch):
    monkeypatch.delenv("WARDEN_PGO", raising=False)
    return _load("warden_build_guided", PATH.parent / "guided.py")


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
    monkeypatch.setenv("WARDEN_PGO", "0")
    assert backend.get_requires_for_build_wheel() == [backend.MYPY]


def test_a_guided_build_asks_for_what_the_data_path_imports(backend, monkeypatch):
    """The training runs the data path in the build's environment: it needs the project's
    dependencies there (pip brings them, as it will for the install)."""
    monkeypatch.setattr(backend._setuptools, "get_requires_for_build_wheel", lambda c: [])
    monkeypatch.setattr(backend, "can_compile", lambda: True)
    monkeypatch.setenv("WARDEN_PGO", "1")
    monkeypatch.chdir(ROOT)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert backend.get_requires_for_build_wheel() == [backend.MYPY, *project["dependencies"]]


@pytest.mark.parametrize(("asked", "gcc", "wanted"), [
    ("", True, True), ("", False, False), ("1", False, True), ("0", True, False),
    ("no", True, False), ("yes", False, True)])
def test_when_a_build_is_guided(guided, monkeypatch, asked, gcc, wanted):
    monkeypatch.setenv("WARDEN_PGO", asked)
    monkeypatch.setattr(guided, "is_gcc", lambda: gcc)
    assert guided.wanted() is wanted


def test_this_machine_compiles_with_gcc(guided):
    """CI's compiled builds are guided: GCC must be the compiler Python builds with."""
    assert guided.is_gcc()


def test_each_build_has_its_flags_and_keeps_mypycs(guided):
    ext = SimpleNamespace(extra_compile_args=["-O3"], extra_link_args=["-s"])
    guided.collect([ext], "/p")
    assert ext.extra_compile_args == ["-O3", "-fprofile-generate=/p", "-fprofile-update=single"]
    assert ext.extra_link_args == ["-s", "-fprofile-generate=/p"]
    guided.apply([ext], "/p")
    assert ext.extra_compile_args == ["-O3", "-fprofile-use=/p", "-fprofile-partial-training",
                                      "-Wno-missing-profile"]
    assert ext.extra_link_args == ["-s"]
    guided.plain([ext])
    assert (ext.extra_compile_args, ext.extra_link_args) == (["-O3"], ["-s"])


@pytest.mark.parametrize("gcc", [True, False])
def test_gcc_builds_call_within_the_library_directly(guided, monkeypatch, gcc):
    monkeypatch.setattr(guided, "is_gcc", lambda: gcc)
    ext = SimpleNamespace(extra_compile_args=["-O3"], extra_link_args=[])
    guided.direct_calls([ext])
    own = ["-O3", "-fno-semantic-interposition"] if gcc else ["-O3"]
    assert ext.extra_compile_args == own
    guided.collect([ext], "/p")   # (kept by each phase of a guided build)
    assert ext.extra_compile_args[:len(own)] == own


def test_the_compiled_library_calls_its_own_functions_directly():
    """No call from one compiled function to another goes through the PLT (each such call
    is an indirect jump more, and cannot be inlined)."""
    from warden import compiled
    if compiled.describe() != "compiled":
        pytest.skip("the data path runs interpreted here: there is no library to look at")
    library = importlib.import_module("warden_native__mypyc").__file__
    code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", library],
                          capture_output=True, text=True, check=True).stdout
    calls = code.count("call")
    through_plt = [line for line in code.splitlines() if "<CPyDef_" in line and "@plt>" in line]
    assert calls > 10_000 and through_plt == [], through_plt[:5]


def test_the_training_runs_the_data_path_and_checks_its_answers(guided):
    guided.train(str(ROOT), rounds=20)   # (the sources here: what it runs is the same code)


def test_a_training_that_fails_is_an_error(guided, tmp_path):
    """A workload whose requests are not answered stops the training (setup.py then builds
    without the profile, or fails under WARDEN_PGO=1)."""
    broken = tmp_path / "warden"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('a broken build')\n")
    with pytest.raises(subprocess.CalledProcessError):
        guided.train(str(tmp_path), rounds=20)


def test_this_machine_can_compile(backend):
    """CI compiles the data path on this machine; it must find a compiler and headers."""
    assert backend.can_compile()
