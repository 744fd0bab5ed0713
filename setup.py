"""Compiles the data path with mypyc where it can (build_support/backend.py says when), and
falls back to plain Python where it cannot; the result is the same behaviour either way
(`warden --version` says which build runs)."""

import os
import runpy
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_support"))
import guided  # profile-guided optimisation and direct calls (GCC)
from backend import ASKING, EDITABLE, asked, compiles  # the backend's own rules


class BuildNativeOrPure(build_ext):
    """All compiled or none: mypyc's modules share one library, so a partial build would
    leave modules that cannot import. Unless WARDEN_COMPILE=1, a failure falls back to the
    pure-Python sources (and says so)."""

    def run(self) -> None:
        try:
            if self.extensions and guided.wanted():
                self._run_guided()
            else:
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

    def _run_guided(self) -> None:
        """Built with counters, trained on the workload, built again with the counts
        (build_support/guided.py). A failed training builds without them, unless
        WARDEN_PGO=1."""
        folder = tempfile.mkdtemp(prefix="warden-pgo-")
        self.force = True   # (every object compiled again, in each build)
        compiler = self.compiler   # (a name or None: `run` replaces it with the compiler)
        try:
            guided.collect(self.extensions, folder)
            super().run()
            self.compiler = compiler
            try:
                guided.train(os.path.abspath(".") if self.inplace else self.build_lib)
            except Exception as e:
                if guided.asked() == "1":
                    raise
                print(f"warden: training the profile-guided build failed ({e}); building "
                      "without it (WARDEN_PGO=1 makes this a failure)", file=sys.stderr)
                guided.plain(self.extensions)
            else:
                print("warden: trained; compiling the data path with its profile",
                      file=sys.stderr)
                guided.apply(self.extensions, folder)
            super().run()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


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
    extensions = mypycify(list(modules), opt_level="3", group_name="warden_native")
    guided.direct_calls(extensions)
    return extensions


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": BuildNativeOrPure})
