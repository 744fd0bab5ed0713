"""The edge's settings: the defaults a listener reachable by clients wants, and what is
refused at load."""

from __future__ import annotations

import pytest

from warden.app import server_limits
from warden.config import ConfigError, parse_settings

BACKENDS = [{"name": "a", "url": "http://127.0.0.1:9"}]


def test_defaults_hide_the_backends_and_bound_request_bodies():
    settings = parse_settings({"backends": BACKENDS}, {})
    assert settings.expose_upstream is False
    limits = server_limits(settings)
    assert (limits.max_body, limits.max_body_buffer) == (100 * 2**20, 256 * 2**20)
    assert (limits.max_header_bytes, limits.max_header_count) == (64 * 2**10, 100)


def test_a_budget_smaller_than_one_body_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_settings({"backends": BACKENDS, "limits": {"max_body": "512MiB"}}, {})
    assert "max_body_buffer must be at least max_body" in str(caught.value)


@pytest.mark.parametrize("key", ["max_body", "max_body_buffer", "max_header_bytes",
                                 "max_header_count"])
def test_a_zero_limit_is_refused(key):
    with pytest.raises(ConfigError) as caught:
        parse_settings({"backends": BACKENDS, "limits": {key: 0}}, {})
    assert f"limits.{key}" in str(caught.value)
