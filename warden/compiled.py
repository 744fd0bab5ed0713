"""The data path, compiled: which modules mypyc turns into C, and whether they were.

Every request and every relayed chunk runs these modules; compiled (what `pip install .` does
where a C compiler exists; see build_support/backend.py and setup.py), they cost ~45% fewer
instructions per request and ~50% fewer per chunk than interpreted. Everything else (config,
CLI, fleet watching, the recorder's files, the simulator) stays interpreted: it runs per
second or per batch, not per request. An editable install (`pip install -e .`) runs them
interpreted unless WARDEN_COMPILE=1; WARDEN_COMPILE=0 never compiles.

Rules for a compiled module (mypyc's native classes), checked in CI by `mypy` and
tests/unit/test_compiled.py:
- it type-checks cleanly (mypyc refuses otherwise, and trusts the types at run time);
- no class derives from a Python class: an asyncio protocol is one by its methods, and
  exception classes live in `warden.errors` (a native subclass of a Python class neither
  overrides its class attributes nor survives being weakly referenced);
- attributes are declared on the class or set in `__init__` (native instances have no
  `__dict__`); one deleted with `del` is named in `__deletable__`;
- class constants read through the class are `Final`; one assignment per line in a class body;
- no attribute named `_thread` (mypyc's C field would be `__thread`, a C keyword).

This module imports nothing of Warden's: setup.py reads `MODULES` from it before install.
"""

from __future__ import annotations

import importlib

MODULES = (
    "warden/admin/traffic.py",
    "warden/admission/affinity.py",
    "warden/admission/auth.py",
    "warden/admission/chain.py",
    "warden/admission/guard_stage.py",
    "warden/admission/limits.py",
    "warden/admission/parse.py",
    "warden/admission/stage.py",
    "warden/edge/budget.py",
    "warden/edge/connection.py",
    "warden/edge/reading.py",
    "warden/edge/request.py",
    "warden/edge/responding.py",
    "warden/edge/wire.py",
    "warden/exchange.py",
    "warden/fleet/backend.py",
    "warden/fleet/breaker.py",
    "warden/forensics/listener.py",
    "warden/guard/fields.py",
    "warden/guard/guard.py",
    "warden/guard/lax.py",
    "warden/guard/prompt_size.py",
    "warden/guard/triggers.py",
    "warden/guard/validate.py",
    "warden/observe/access_log.py",
    "warden/observe/metrics.py",
    "warden/observe/trace_listener.py",
    "warden/proxy/forwarder.py",
    "warden/proxy/headers.py",
    "warden/proxy/relay.py",
    "warden/record/buffer.py",
    "warden/record/recorder.py",
    "warden/record/render.py",
    "warden/routes.py",
    "warden/routing/affinity.py",
    "warden/routing/filters.py",
    "warden/routing/pickers.py",
    "warden/routing/policy.py",
    "warden/routing/scorers.py",
    "warden/routing/scoring_policy.py",
    "warden/stream/observer.py",
    "warden/stream/sse.py",
    "warden/stream/usage_strip.py",
    "warden/tenancy/answers.py",
    "warden/tenancy/exact.py",
    "warden/tenancy/exact_parts.py",
    "warden/tenancy/health.py",
    "warden/tenancy/keys.py",
    "warden/tenancy/leased.py",
    "warden/tenancy/ledger.py",
    "warden/tenancy/native.py",
    "warden/tenancy/settle.py",
    "warden/tenancy/subject.py",
    "warden/upstream/batch.py",
    "warden/upstream/connection.py",
    "warden/upstream/pool.py",
    "warden/upstream/sink.py",
    "warden/upstream/target.py",
)


def module_names() -> list[str]:
    return [path.removesuffix(".py").replace("/", ".") for path in MODULES]


def compiled_modules() -> list[str]:
    """The data-path modules that this process runs compiled (an extension module)."""
    compiled = []
    for name in module_names():
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        if not origin.endswith(".py"):
            compiled.append(name)
    return compiled


def describe() -> str:
    """`compiled`, `interpreted`, or `partly compiled (n of m)`: a build that lost modules,
    or an older one that compiled fewer. (A compiled module older than its source is not
    detected: rebuild after editing.)"""
    done, total = len(compiled_modules()), len(MODULES)
    if done == total:
        return "compiled"
    return "interpreted" if done == 0 else f"partly compiled ({done} of {total})"


if __name__ == "__main__":  # the paths, for `mypy $(python -m warden.compiled)`
    print(" ".join(MODULES))
