"""The flight recorder's sinks by name (`SINKS`), and `build_sinks`: the ones its settings ask
for. The recorder builds its own from this table unless it is given some (a test's)."""

from __future__ import annotations

from collections.abc import Callable

from warden.config.recorder_schema import RecorderSpec
from warden.record.postgres import PostgresSink
from warden.record.sink import Sink
from warden.record.writer import FileSink


def _postgres(spec: RecorderSpec) -> Sink | None:
    return PostgresSink(spec.postgres) if spec.postgres is not None else None


# Each builds its sink from the recorder's settings, or None when they do not ask for it. In
# the order the recorder opens them and hands each batch over: the files first, always (an
# unwritable directory stops the start before anything else has started).
SINKS: dict[str, Callable[[RecorderSpec], Sink | None]] = {
    "files": FileSink,
    "postgres": _postgres,
}


def build_sinks(spec: RecorderSpec) -> list[Sink]:
    return [sink for build in SINKS.values() if (sink := build(spec)) is not None]
