"""The limits' settings validate what they should and say clearly what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from warden.config.limits_schema import LimitValues, RateLimitSpec


def problems(spec: type, **fields: object) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


def test_limit_values_take_counts_and_leave_the_rest_unlimited():
    assert LimitValues(rpm=60, tpm="90000") == LimitValues(rpm=60, tpm=90000)
    values = LimitValues(max_concurrent=4)
    assert (values.rpm, values.tpm, values.max_concurrent) == (None, None, 4)
    with pytest.raises(ValidationError):
        values.rpm = 5  # type: ignore[misc] - frozen


@pytest.mark.parametrize(("fields", "where", "says"), [
    ({"rpm": 0}, "rpm", "greater than 0"),
    ({"tpm": -5}, "tpm", "greater than 0"),
    ({"max_concurrent": True}, "max_concurrent", "whole number"),
    ({"rpm": 2.5}, "rpm", "whole number"),
    ({"rpm": "ten"}, "rpm", "whole number"),
    ({"rps": 5}, "rps", "Extra inputs are not permitted"),
])
def test_limit_values_refuse_what_is_not_a_positive_count(fields, where, says):
    [(loc, message)] = problems(LimitValues, **fields)
    assert loc == (where,) and says in message


def test_rate_limit_spec_defaults_are_one_replica_leased_and_open():
    spec = RateLimitSpec()
    assert (spec.store, spec.mode, spec.fail_mode) == ("memory", "leased", "open")
    assert spec.timeout == 0.5 and spec.slot_ttl == 30.0 and spec.default_max_tokens == 1024
    shared = RateLimitSpec(store="redis", mode="exact", redis_url="redis://cache:6379/2",
                           key_prefix="{w}:limits:", timeout="250ms", slot_ttl="1m",
                           lease_fraction=0.1, fail_mode="closed", default_max_tokens=0)
    assert (shared.timeout, shared.slot_ttl, shared.lease_fraction) == (0.25, 60.0, 0.1)


@pytest.mark.parametrize(("fields", "where", "says"), [
    ({"store": "postgres"}, ("store",), "'memory' or 'redis'"),
    ({"mode": "approximate"}, ("mode",), "'leased' or 'exact'"),
    ({"fail_mode": "maybe"}, ("fail_mode",), "'open' or 'closed'"),
    ({"redis_url": "http://cache:6379"}, ("redis_url",), "not a Redis URL"),
    ({"key_prefix": ""}, ("key_prefix",), "at least 1 character"),
    ({"lease_fraction": 0}, ("lease_fraction",), "greater than 0"),
    ({"lease_fraction": 1.5}, ("lease_fraction",), "less than or equal to 1"),
    ({"timeout": "0s"}, ("timeout",), "must be more than 0"),
    ({"timeout": "soon"}, ("timeout",), "not a duration"),
    ({"default_max_tokens": -1}, ("default_max_tokens",), "greater than or equal to 0"),
    ({"store": "memory", "mode": "exact"}, (), "mode: exact needs store: redis"),
    ({"slot_ttl": "1s", "timeout": "1s"}, (), "slot_ttl (1s) must be at least 1s and 3 times"),
    ({"slot_ttl": "500ms", "timeout": "100ms"}, (), "must be at least 1s"),
    ({"limits": {}}, ("limits",), "Extra inputs are not permitted"),
])
def test_rate_limit_spec_refuses_bad_values_clearly(fields, where, says):
    found = problems(RateLimitSpec, **fields)
    assert any(loc == where and says in message for loc, message in found), found
