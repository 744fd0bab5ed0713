"""The recorder's settings refuse values that would silently drop every record or never write
one, and the quarantine's file has a setting of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.app import build_quarantine
from warden.config import ConfigError, parse_settings

BACKEND = {"name": "a", "url": "http://127.0.0.1:18090"}


def problems(recorder: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"backends": [BACKEND], "recorder": recorder}, {})
    return caught.value.problems


@pytest.mark.parametrize(("recorder", "problem"), [
    ({"max_file_size": 0, "max_total_size": 0},
     "recorder.max_file_size: must be at least 4KiB"),
    ({"max_file_size": "1KiB"}, "recorder.max_file_size: must be at least 4KiB"),
    ({"max_total_size": 0},
     "recorder: max_total_size must hold at least four files of max_file_size"),
    ({"flush_interval": 0}, "recorder.flush_interval: must be more than 0"),
    ({"rotate_interval": "0s"}, "recorder.rotate_interval: must be more than 0"),
    ({"max_age": 0}, "recorder.max_age: must be more than 0"),
    ({"queue_size": 0}, "recorder.queue_size: Input should be greater than or equal to 1"),
    ({"max_files": 1}, "recorder.max_files: Input should be greater than or equal to 2"),
    ({"queue_bytes": "1KiB"}, "recorder.queue_bytes: must be at least 64KiB"),
    ({"postgres": {"dsn": "postgresql://x/y", "timeout": 0}},
     "recorder.postgres.timeout: must be more than 0"),
    ({"postgres": {"dsn": "postgresql://x/y", "retention": "1h"}},
     "recorder.postgres.retention: must be at least 1d"),
    ({"postgres": {"dsn": "postgresql://x/y", "queue_bytes": 0}},
     "recorder.postgres.queue_bytes: must be at least 64KiB"),
    ({"postgres": {"dsn": "postgresql://x/y", "queue_size": 0}},
     "recorder.postgres.queue_size: Input should be greater than or equal to 1"),
])
def test_nonsense_recorder_values_are_refused_at_load(recorder, problem):
    assert problems(recorder) == [problem]


def test_every_recorder_mistake_is_reported_at_once():
    found = problems({"max_file_size": 0, "flush_interval": 0, "max_age": "0s"})
    assert len(found) == 3, found


def test_the_smallest_sensible_values_load():
    settings = parse_settings({"backends": [BACKEND], "recorder": {
        "max_file_size": "4KiB", "max_total_size": "16KiB", "flush_interval": "1ms",
        "min_free_disk": 0, "queue_size": 1, "queue_bytes": "64KiB",
        "postgres": {"dsn": "postgresql://x/y", "retention": "1d", "queue_bytes": "64KiB",
                     "drain_timeout": 0}}}, {})
    assert settings.recorder.max_total_size == 16384
    assert settings.recorder.postgres.drain_timeout == 0


def test_the_quarantine_file_is_its_own_setting(tmp_path: Path):
    default = parse_settings({"backends": [BACKEND], "recorder": {"dir": str(tmp_path)}}, {})
    assert default.quarantine_file == tmp_path / "quarantine.json"
    own = tmp_path / "elsewhere" / "holds.json"
    settings = parse_settings({"backends": [BACKEND],
                               "recorder": {"enabled": False, "dir": str(tmp_path)},
                               "guard": {"quarantine": {"file": str(own)}}}, {})
    parts = build_quarantine(settings, lambda backend: False)
    assert parts is not None and parts.quarantine.store.path == own
