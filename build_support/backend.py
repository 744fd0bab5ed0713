"""Warden's build backend: setuptools, asking for mypy (which brings mypyc) only when the
build will compile the data path (warden/compiled.py), so a pure-Python install needs no
compiler and downloads no mypy.

When it compiles (see setup.py): a wheel (`pip install .`) is compiled where a C compiler and
Python's headers exist, unless WARDEN_COMPILE=0; an editable install (`pip install -e .`) is
not, unless WARDEN_COMPILE=1 (a compiled checkout runs its .so files, not the sources you
edit). WARDEN_COMPILE=1 also makes a failed compilation fail the install; otherwise a wheel
whose compilation fails is built pure, and says so.

A compiled build with profile-guided optimisation (build_support/guided.py) runs the data
path while it builds, so it asks for Warden's own dependencies too (the same the install
brings).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sysconfig
import tomllib
from pathlib import Path

import guided
from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - the rest of the PEP 517 hooks, as they are

MYPY = "mypy>=2.4"
EDITABLE = "WARDEN_BUILD_EDITABLE"  # set while an editable install is built (setup.py reads it)
ASKING = "WARDEN_BUILD_ASKING"      # set while setuptools runs setup.py for its requirements


def asked() -> str:
    """WARDEN_COMPILE as asked: "1" (must), "0" (must not) or "" (where it can)."""
    return guided.switch("WARDEN_COMPILE")


def can_compile() -> bool:
    """A C compiler on PATH and Python's headers (what mypyc's C needs)."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(guided.c_compiler()) is not None and headers.exists()


def compiles(editable: bool) -> bool:
    mode = asked()
    if mode:
        return mode == "1"
    return not editable and can_compile()


def compiling_needs() -> list[str]:
    """What a compiled build needs beyond setuptools: mypy, and with profile-guided
    optimisation, what the data path imports when it runs."""
    if not guided.wanted():
        return [MYPY]
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    return [MYPY, *project["dependencies"]]


def get_requires_for_build_wheel(config_settings=None):
    with _env(ASKING):
        requires = _setuptools.get_requires_for_build_wheel(config_settings)
    return [*requires, *compiling_needs()] if compiles(editable=False) else requires


def get_requires_for_build_editable(config_settings=None):
    with _env(ASKING, EDITABLE):
        requires = _setuptools.get_requires_for_build_editable(config_settings)
    return [*requires, *compiling_needs()] if compiles(editable=True) else requires


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    with _env(ASKING, EDITABLE):
        return _setuptools.prepare_metadata_for_build_editable(metadata_directory,
                                                               config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    with _env(ASKING):
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    with _env(EDITABLE):
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


@contextlib.contextmanager
def _env(*names: str):
    """These environment variables set to "1" for the duration (setup.py reads them)."""
    for name in names:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
