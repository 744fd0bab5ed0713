from __future__ import annotations

import random
from collections import Counter

from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.routing.policy import LeastRequest, RoundRobin, build_policy


def backends(*in_flight: int) -> list[Backend]:
    out = []
    for i, n in enumerate(in_flight):
        backend = Backend(BackendSpec(name=f"b{i}", url=f"http://127.0.0.1:{9000 + i}"),
                          TimeoutsSpec())
        backend.in_flight = n
        out.append(backend)
    return out


def test_round_robin_cycles_evenly():
    fleet = backends(0, 0, 0)
    policy = RoundRobin()
    picks = Counter(policy.pick(fleet).name for _ in range(300))
    assert picks == {"b0": 100, "b1": 100, "b2": 100}


def test_least_request_picks_the_least_loaded():
    fleet = backends(5, 1, 3)
    assert LeastRequest(random.Random(1)).pick(fleet).name == "b1"


def test_least_request_spreads_ties():
    fleet = backends(2, 2, 9)
    policy = LeastRequest(random.Random(3))
    picks = Counter(policy.pick(fleet).name for _ in range(1000))
    assert set(picks) == {"b0", "b1"} and min(picks.values()) > 400


def test_policies_by_name():
    assert isinstance(build_policy("round_robin"), RoundRobin)
    assert isinstance(build_policy("least_request"), LeastRequest)


def test_backend_availability_cooldown():
    (backend,) = backends(0)
    backend.mark_unreachable(now=100.0, cooldown=2.0, reason="refused")
    assert not backend.available(101.0)
    assert backend.available(102.0)  # may be probed again by a real request
    backend.mark_reachable()
    assert backend.available(100.5)
