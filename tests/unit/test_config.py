from __future__ import annotations

import pytest

from warden.config import ConfigError
from warden.config.loader import settings_from_yaml
from warden.config.units import parse_duration, parse_size
from warden.settings import parse_settings

BACKEND = {"name": "a", "url": "http://127.0.0.1:18090"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), ("1.5s", 1.5),
    ("7", 7.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("100MiB", 100 * 2**20), ("8KB", 8000), ("1KiB", 1024), (42, 42), ("3 GiB", 3 * 2**30)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["soon", "-1s", True, "5 parsecs", None])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def problems(raw: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, env or {})
    return caught.value.problems


def test_issue_example_parses():
    settings = parse_settings({
        "listen": "127.0.0.1:8000",
        "backends": [{"name": "node-a", "url": "http://127.0.0.1:18090", "models": ["qwen"]},
                     {"name": "node-b", "url": "http://127.0.0.1:18091"}],
        "routing": {"policy": "least_request"},
        "timeouts": {"connect": "5s", "first_byte": "600s", "idle": "600s"},
        "limits": {"max_body": "100MiB"}}, {})
    assert settings.listen == ("127.0.0.1", 8000)
    assert settings.backends[0].models == ["qwen"] and settings.backends[1].models is None
    assert settings.timeouts.first_byte == 600.0
    assert settings.limits.max_body == 100 * 2**20


def test_every_mistake_is_reported_with_its_path():
    found = problems({"listen": "nowhere",
                      "backends": [BACKEND, {"name": "b", "url": "ftp://x"},
                                   {"url": "http://h:1"}],
                      "timeouts": {"idle": "later"}, "extra": 1})
    assert "listen: not HOST:PORT (e.g. 127.0.0.1:8000)" in found
    assert "backends[1].url: not a URL (expected http://host:port)" in found
    assert "backends[2].name: required" in found
    assert "timeouts.idle: not a duration (use e.g. 5s, 250ms, 2m, 7d)" in found
    assert "extra: unknown field" in found


def test_backends_required_and_unique():
    assert problems({}) == ["backends: required"]
    assert problems({"backends": []})[0].startswith("backends:")
    assert "backend name 'a' is used twice" in problems({"backends": [BACKEND, BACKEND]})[0]
    twin = {"name": "b", "url": "http://127.0.0.1:18090/"}
    assert "used twice" in problems({"backends": [BACKEND, twin]})[0]


def test_a_key_written_twice_is_refused_not_the_first_dropped():
    """YAML's last-one-wins would drop the first `auth:` block (its mode and keys) silently."""
    text = ("backends: [{name: a, url: 'http://127.0.0.1:1'}]\n"
            "auth: {mode: required, keys: [{id: k, value: sk-0123456789abcdef}]}\n"
            "auth:\n  admin_keys: []\n")
    with pytest.raises(ConfigError) as refused:
        settings_from_yaml(text, "warden.yaml", {})
    assert refused.value.problems == ["warden.yaml: `auth` is written twice (line 3, column 1)"]
    merged = ("base: &b {name: a, url: 'http://127.0.0.1:1'}\n"
              "backends: [{<<: *b, url: 'http://127.0.0.1:2'}]\n")
    with pytest.raises(ConfigError) as unknown:  # (an override of a merge key is no twin)
        settings_from_yaml(merged, "warden.yaml", {})
    assert unknown.value.problems == ["base: unknown field"]


def test_health_checks_that_could_never_pass_are_refused():
    for active, says in [({"timeout": 0}, "health.active.timeout: Input should be greater "
                                          "than 0"),
                         ({"path": "health"}, "health.active.path: a path starting with /"),
                         ({"path": "/he alth"}, "health.active.path: a path starting with /")]:
        assert problems({"backends": [BACKEND], "health": {"active": active}})[0] \
            .startswith(says)


def test_url_rules():
    assert "without a path" in problems({"backends": [{"name": "a",
                                                       "url": "http://h:1/v1"}]})[0]
    assert "not a URL" in problems({"backends": [{"name": "a", "url": "ftp://h"}]})[0]
    settings = parse_settings({"backends": [{"name": "a", "url": "https://h"}]}, {})
    assert settings.backends[0].tls and settings.backends[0].port == 443


def test_env_expansion_with_default_and_missing():
    raw = {"backends": [{"name": "a", "url": "http://${HOST:-127.0.0.1}:${PORT}",
                         "api_key": "${KEY}"}]}
    settings = parse_settings(raw, {"PORT": "9000", "KEY": "k"})
    assert settings.backends[0].url == "http://127.0.0.1:9000"
    assert settings.backends[0].api_key == "k"
    assert problems(raw, {"PORT": "1"}) == [
        "backends[0].api_key: environment variable KEY is not set"]


def test_top_level_must_be_mapping():
    with pytest.raises(ConfigError):
        parse_settings(["not", "a", "mapping"], {})


def test_guard_mistakes_are_reported_with_their_paths():
    found = problems({"backends": [BACKEND], "guard": {
        "custom": [{"id": "x", "action": "reject", "match": {"n": {"bigger": 3}}}],
        "limits": {"max_n": 0}, "quarantine": {"store": "redisx"},
        "validation": {"unknown_fields": "drop"}}})
    assert any(p.startswith("guard.custom[0]: match.n: unknown predicate 'bigger'")
               for p in found), found
    assert "guard.limits.max_n: Input should be greater than or equal to 1" in found
    assert "guard.quarantine.store: must be 'memory' or 'redis'" in found
    assert "guard.validation.unknown_fields: must be 'pass' or 'reject'" in found
    actions = problems({"backends": [BACKEND], "guard": {"actions": {"so-bad-regex":
                                                                     "normalize"}}})
    assert actions == ["guard: guard rule so-bad-regex cannot normalize (no safe rewrite)"]
