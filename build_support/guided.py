"""Profile-guided optimisation of the compiled data path (setup.py runs it; GCC only).

mypyc's C is long and mostly cold (every call has its error path beside it), and a request
runs through more of it than a core's instruction cache holds: the data path's time goes as
much to instruction-cache misses as to instructions. Built once with counters
(`-fprofile-generate`), run on the workload (build_support/training.py: plain and streamed
requests, the openai SDK's headers, the recorder, keys and limits), and built again with the
counts (`-fprofile-use`), GCC lays the hot paths out together and the cold ones apart: the
same instructions in 7-17% less time (the data path alone; under load, with the kernel's
share, 4-10% more throughput: docs/benchmarks.md).

Every GCC build, guided or not, also calls between the library's functions directly
(DIRECT_CALLS), not through the PLT.

WARDEN_PGO=0 builds without it; WARDEN_PGO=1 makes a failed training fail the build (else
the build goes on without the profile, and says so). A compiler other than GCC (clang's
profiles need llvm-profdata) builds without it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PGO = "WARDEN_PGO"
TRAINING = Path(__file__).resolve().parent / "training.py"
ROUNDS = 3000       # per shape of traffic: a few seconds instrumented
TIMEOUT = 600.0     # seconds the training may take before it counts as failed
_COLLECT = ("-fprofile-update=single",)
_APPLY = ("-fprofile-partial-training", "-Wno-missing-profile")
# Every GCC build's, guided or not: calls within the library direct. mypyc's functions are
# global symbols of one shared library; compiled -fPIC, GCC lets each be replaced when the
# library is loaded (semantic interposition), so every call between them went through the
# PLT and none was inlined (~18,000 call sites). Nothing replaces them (CPython builds
# itself with the same flag; clang assumes it): the data path 8-13% faster.
DIRECT_CALLS = ("-fno-semantic-interposition",)


def switch(name: str) -> str:
    """A build switch from the environment: "1" (must), "0" (must not) or "" (unset, or
    anything else: the build decides)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes"):
        return "1"
    if value in ("0", "false", "no"):
        return "0"
    return ""


def asked() -> str:
    """WARDEN_PGO as asked ("": guided where the compiler is GCC)."""
    return switch(PGO)


def wanted() -> bool:
    mode = asked()
    return mode == "1" or (mode == "" and is_gcc())


def c_compiler() -> str:
    """The C compiler extensions are built with (Python's own build's, as setuptools uses)."""
    return (sysconfig.get_config_var("CC") or "cc").split()[0]


@functools.cache   # (asked by `wanted` and `direct_calls`: one `--version` run a build)
def is_gcc() -> bool:
    compiler = c_compiler()
    if shutil.which(compiler) is None:
        return False
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in version and "clang" not in version


def direct_calls(extensions: list) -> None:
    """With GCC, DIRECT_CALLS in every extension's own flags (kept by each guided phase)."""
    if is_gcc():
        for ext in extensions:
            ext.extra_compile_args = [*ext.extra_compile_args, *DIRECT_CALLS]


def collect(extensions: list, folder: str) -> None:
    """Compile and link with counters, which the training writes to `folder`."""
    _set(extensions, (f"-fprofile-generate={folder}", *_COLLECT), (f"-fprofile-generate={folder}",))


def apply(extensions: list, folder: str) -> None:
    """Compile with the counts in `folder`."""
    _set(extensions, (f"-fprofile-use={folder}", *_APPLY), ())


def plain(extensions: list) -> None:
    _set(extensions, (), ())


def train(path: str, rounds: int = ROUNDS) -> None:
    """Runs the workload on the modules built under `path` (first on its import path);
    CalledProcessError if it fails (a request not answered as it should be)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [path, *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, str(TRAINING), str(rounds)], env=env, check=True,
                   timeout=TIMEOUT)


def _set(extensions: list, compile_flags: tuple[str, ...], link_flags: tuple[str, ...]) -> None:
    """Each extension's flags: its own (mypyc's), and these instead of any set before."""
    for ext in extensions:
        own = getattr(ext, "_warden_own", None)
        if own is None:
            own = ext._warden_own = (list(ext.extra_compile_args), list(ext.extra_link_args))
        ext.extra_compile_args = [*own[0], *compile_flags]
        ext.extra_link_args = [*own[1], *link_flags]
