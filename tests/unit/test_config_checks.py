"""A config's mistakes are all reported in one run, and a value that would stop `warden serve`
(or make it fail every request) does not pass `check-config`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from warden import config
from warden.config import ConfigError
from warden.settings import parse_settings

BACKEND = {"name": "a", "url": "http://127.0.0.1:18090"}


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, {})
    return caught.value.problems


def test_every_guard_mistake_is_reported_at_once():
    found = problems({"backends": [BACKEND], "guard": {
        "disable": ["no-such-rule"],
        "actions": {"so-bad-regex": "normalize", "other-missing": "reject"},
        "custom": [
            {"id": "Bad Id", "action": "normalize",
             "match": {"n": {"bigger": 3}, "s": {"matches": "("}}},
            {"id": "so-bad-regex", "action": "reject", "delete": ["n"],
             "match": {"a..b": {"eq": 1}, "n": {"gt": "x"}}},
        ]}})
    expected = [
        "guard.custom[0].id: String should match",
        "guard.custom[0]: match.n: unknown predicate 'bigger'",
        "guard.custom[0]: match.s.matches: not a regex",
        "guard.custom[0]: action normalize needs `delete` or `set`",
        "guard.custom[1]: match: 'a..b' is not a path",
        "guard.custom[1]: match.n.gt: expected a number",
        "guard.custom[1]: `delete` and `set` belong to action normalize, not reject",
        "guard: unknown guard rule no-such-rule",
        "guard: unknown guard rule other-missing",
        "guard: guard rule id so-bad-regex is used twice",
        "guard: guard rule so-bad-regex cannot normalize (no safe rewrite)",
    ]
    for start in expected:
        assert sum(p.startswith(start) for p in found) == 1, (start, found)
    assert len(found) == len(expected), found


def test_the_guard_checks_its_own_settings_through_configs_seam():
    """Config knows the guard's settings' shape, not the rule ids: the guard's check comes
    from above (warden.settings), and config imports nothing of the guard's."""
    raw = {"backends": [BACKEND], "guard": {"disable": ["no-such-rule"]}}
    assert config.parse_settings(raw, {}).guard.disable == ["no-such-rule"]
    assert problems(raw) == ["guard: unknown guard rule no-such-rule"]
    imported = [(path.name, name) for path in Path(config.__file__).parent.glob("*.py")
                for node in ast.walk(ast.parse(path.read_text()))
                for name in ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else [node.module or ""] if isinstance(node, ast.ImportFrom)
                             else [])
                if name.startswith("warden.guard")]
    assert imported == []


def test_guard_and_other_mistakes_come_together():
    found = problems({"backends": [BACKEND], "timeouts": {"connect": "soon"},
                      "guard": {"disable": ["nope"], "limits": {"max_n": 0}}})
    assert "timeouts.connect: not a duration (use e.g. 5s, 250ms, 2m, 7d)" in found
    assert "guard: unknown guard rule nope" in found
    assert "guard.limits.max_n: Input should be greater than or equal to 1" in found


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "redis://host:port", "http://h:6379"])
def test_a_redis_url_the_client_cannot_read_is_refused(url):
    found = problems({"backends": [BACKEND], "guard": {"quarantine": {"store": "redis",
                                                                      "redis_url": url}}})
    assert len(found) == 1 and found[0].startswith(
        "guard.quarantine.redis_url: not a Redis URL ("), found


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h", "unix:///tmp/r.sock"])
def test_redis_urls_of_every_scheme_pass(url):
    parse_settings({"backends": [BACKEND], "guard": {"quarantine": {"redis_url": url}}}, {})


@pytest.mark.parametrize(("dsn", "reason"), [
    ("host=127.0.0.1 dbname=test", "expected postgresql://user@host:5432/db"),
    ("mysql://h/db", "expected postgresql://user@host:5432/db"),
    ("postgresql://h:port/db", "bad port"),
])
def test_a_postgres_dsn_the_driver_cannot_read_is_refused(dsn, reason):
    assert problems({"backends": [BACKEND], "recorder": {"postgres": {"dsn": dsn}}}) == [
        f"recorder.postgres.dsn: not a PostgreSQL URL ({reason})"]


@pytest.mark.parametrize("key", ["connect", "first_byte", "idle", "pool"])
def test_a_zero_timeout_that_would_fail_every_request_is_refused(key):
    assert problems({"backends": [BACKEND], "timeouts": {key: 0}}) == [
        f"timeouts.{key}: Input should be greater than 0"]


def test_discovery_cannot_poll_in_a_busy_loop():
    assert problems({"backends": [BACKEND], "discovery": {"interval": 0}}) == [
        "discovery.interval: Input should be greater than or equal to 0.1"]
