"""Builds the data path with mypyc when WARDEN_COMPILE=1 (see warden/compiled.py), and then a
failed build fails the install; without it, Warden installs as plain Python (no compiler)."""

import os
import runpy

from setuptools import setup


def _ext_modules() -> list:
    if os.environ.get("WARDEN_COMPILE", "").lower() not in ("1", "true", "yes"):
        return []
    from mypyc.build import mypycify  # (a build requirement: pyproject.toml)

    modules = runpy.run_path(os.path.join("warden", "compiled.py"))["MODULES"]
    return mypycify(list(modules), opt_level="3", group_name="warden_native")


setup(ext_modules=_ext_modules())
