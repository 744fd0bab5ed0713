"""Compiles the data path with mypyc where it can (build_support/backend.py says when), and
falls back to plain Python where it cannot; the result is the same behaviour either way
(`warden --version` says which build runs)."""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_support"))
from backend import ASKING, EDITABLE, asked, compiles  # the backend's own rules


class BuildNativeOrPure(build_ext):
    """All compiled or none: mypyc's modules share one library, so a partial build would
    leave modules that cannot import. Unless WARDEN_COMPILE=1, a failure falls back to the
    pure-Python sources (and says so)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # a compiler error, a missing header: whatever it was
            if asked() == "1":
                raise
            for output in self.get_outputs():
                if os.path.exists(output):
                    os.remove(output)
            self.extensions = []
            print(f"warden: compiling the data path failed ({e}); installing it as plain "
                  "Python (slower, the same behaviour). Set WARDEN_COMPILE=1 to see the "
                  "error as a failure.", file=sys.stderr)


def _ext_modules() -> list:
    if os.environ.get(ASKING) == "1":
        return []  # setuptools only asks what the build needs (the backend adds mypy)
    if not compiles(editable=os.environ.get(EDITABLE) == "1"):
        print("warden: installing the data path as plain Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify  # (a build requirement when compiling)
    except ImportError:
        if asked() == "1":
            raise
        print("warden: mypy is not installed in the build environment; installing the data "
              "path as plain Python", file=sys.stderr)
        return []
    modules = runpy.run_path(os.path.join("warden", "compiled.py"))["MODULES"]
    print(f"warden: compiling {len(modules)} modules of the data path", file=sys.stderr)
    return mypycify(list(modules), opt_level="3", group_name="warden_native")


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": BuildNativeOrPure})
