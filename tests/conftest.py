"""For the whole test run: no process a test started outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux: read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (name) state ppid ...": the name may hold spaces or parentheses.
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(after_name[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def pytest_sessionfinish(session, exitstatus):
    """A test that fails before its `finally` (a gateway that would not start, say) leaves its
    `warden sim` or `warden serve` running: what is left is stopped here, so that a red run
    leaves no process behind either."""
    for pid in _children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGTERM)


def pytest_report_header(config):
    """Which build of the data path this run tests (warden/compiled.py)."""
    from warden.compiled import describe

    return f"warden data path: {describe()}"
