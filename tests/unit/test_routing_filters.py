"""Routing's filters (`routing.filters`): which backends can take a request, and when the
policy is asked to pick."""

from __future__ import annotations

from tests.unit.test_routing import NOW, Req, backends
from warden.routing.filters import choose_backend

# -- what `clear` and `admits` say -----------------------------------------------------------

def test_backend_availability_cooldown():
    (backend,) = backends(0)
    backend.mark_unreachable(now=100.0, cooldown=2.0, reason="refused")
    assert not backend.available(101.0)
    assert backend.available(102.0)  # may be probed again by a real request
    backend.mark_unreachable(now=100.0, cooldown=2.0, reason="refused")
    backend.mark_reachable(100.5)
    assert backend.available(100.5) and backend.clear


def test_draining_and_unhealthy_backends_take_nothing_new():
    (backend,) = backends(0)
    backend.set_draining(True, NOW)
    assert not backend.available(NOW) and backend.state(NOW) == "draining"
    backend.set_draining(False, NOW)
    assert backend.available(NOW) and backend.clear
    backend.set_healthy(False, NOW, "health check: refused")
    assert not backend.available(NOW) and backend.state(NOW) == "unhealthy"
    backend.set_healthy(True, NOW)
    assert backend.state(NOW) == "ready"


def test_failures_eject_and_trip_the_breaker_a_success_resets():
    (backend,) = backends(0)
    for i in range(2):
        backend.failed(NOW + i, probe=False, reason="answered 500")
    backend.succeeded(NOW + 2, probe=False)
    assert backend.breaker is not None and backend.breaker.failures == 0 and backend.clear
    for i in range(3):  # passive: 3 failures within 10 s
        backend.failed(NOW + 3 + i, probe=False, reason="answered 502")
    assert backend.state(NOW + 5) == "ejected" and not backend.available(NOW + 5)
    assert backend.available(NOW + 16)  # ejected for fail_timeout, then back


def test_a_clients_4xx_is_not_a_failure_by_construction():
    """The forwarder reports only 5xx, drops and timeouts (see Forwarder.relay_ended); a
    success after failures resets the breaker's count."""
    (backend,) = backends(0)
    backend.failed(NOW, probe=False, reason="answered 503")
    assert backend.failing
    backend.succeeded(NOW, probe=False)
    assert not backend.failing and backend.breaker.failures == 0


# -- the filter step --------------------------------------------------------------------------

class Picking:
    """A policy that records what it was offered and picks the last."""

    def __init__(self):
        self.offered: list[list[str]] = []

    def pick(self, candidates, request, now):
        self.offered.append([b.name for b in candidates])
        return candidates[-1]


def choose(serving, tried=(), only=None, policy=None):
    return choose_backend(serving, tried, only, Req(), policy or Picking(), NOW)


def test_a_clear_one_backend_model_is_decided_without_the_policy():
    (backend,) = backends(0)
    policy = Picking()
    assert choose([backend], policy=policy) is backend and policy.offered == []
    backend.in_flight = backend.max_in_flight = 2   # at its cap
    assert choose([backend]) is None
    backend.in_flight = 1
    assert choose([backend], tried=("b0",)) is None
    assert choose([backend], only=frozenset({"other"})) is None
    assert choose([backend], only=frozenset({"b0"})) is backend
    backend.set_draining(True, NOW)
    assert choose([backend]) is None


def test_the_filters_leave_the_candidates_and_the_policy_picks_among_several():
    fleet = backends(0, 0, 0, 0, 0)
    fleet[0].set_healthy(False, NOW, "health check: refused")
    fleet[1].in_flight = fleet[1].max_in_flight = 3
    policy = Picking()
    assert choose(fleet, tried=("b2",), policy=policy) is fleet[4]
    assert policy.offered == [["b3", "b4"]]
    assert choose(fleet, tried=("b2",), only=frozenset({"b0", "b1", "b3"}),
                  policy=policy) is fleet[3]
    assert policy.offered == [["b3", "b4"]]  # one candidate left: no pick
    fleet[3].mark_unreachable(now=NOW, cooldown=2.0, reason="refused")
    assert choose(fleet, only=frozenset({"b3"})) is None
    assert choose_backend(fleet, (), frozenset({"b3"}), Req(), Picking(), NOW + 2) is fleet[3]


def test_weights_set_over_a_preset_keep_the_ones_not_named():
    """`weights: {queue: 3}` under `prefix_aware` keeps its prefix weight (the whole block
    replaced the preset's, and prefix affinity stopped); a weight named 0 is off."""
    import random

    from warden.config import parse_settings
    from warden.routing.policy import POLICIES

    def policy(weights: dict | None):
        routing = {"policy": "prefix_aware", **({"weights": weights} if weights else {})}
        settings = parse_settings({"backends": [{"name": "a", "url": "http://127.0.0.1:1"}],
                                   "routing": routing}, {})
        return POLICIES["prefix_aware"](settings.routing, 5.0, random.Random(1))

    assert policy(None).wants_prefix and policy({"queue": 3}).wants_prefix
    assert not policy({"prefix": 0}).wants_prefix
