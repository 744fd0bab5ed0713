"""The routing policies: filters on the backend, scorers, pickers, presets (no I/O)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import get_args

import pytest

from warden.config.schema import BackendSpec, RoutingSpec, ScorerWeights, SessionSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.fleet.signals import Counters, EngineLoad
from warden.routing.affinity import prefix_key, rendezvous, session_key
from warden.routing.pickers import max_score, power_of_two, weighted_random
from warden.routing.policy import (
    POLICIES,
    LeastRequest,
    RoundRobin,
    Sticky,
    Tiered,
    Weighted,
    build_policy,
    tiered_weight,
)
from warden.routing.scorers import queue
from warden.routing.scoring_policy import Scoring

NOW = 1000.0


@dataclass
class Req:
    prefix_key: int | None = None
    session_key: int | None = None


def backends(*in_flight: int, weights: tuple[int, ...] = ()) -> list[Backend]:
    out = []
    for i, n in enumerate(in_flight):
        spec = BackendSpec(name=f"b{i}", url=f"http://127.0.0.1:{9000 + i}",
                           weight=weights[i] if weights else 100)
        backend = Backend(spec, TimeoutsSpec())
        backend.in_flight = n
        out.append(backend)
    return out


def load(kv: float | None = 0.0, waiting: float | None = 0.0, running: float | None = 0.0,
         preemptions: float | None = 0.0, at: float = NOW, in_flight: int = 0) -> EngineLoad:
    return EngineLoad(at, kv, waiting, running, preemptions, None,
                      Counters(preemptions, None, None, None), in_flight)


def picks(policy, fleet, n: int, request=None) -> Counter[str]:
    return Counter(policy.pick(fleet, request or Req(), NOW).name for _ in range(n))


def load_aware(**overrides) -> Scoring:
    policy = build_policy(RoutingSpec(policy="load_aware", **overrides), 3.0, random.Random(7))
    assert isinstance(policy, Scoring)
    return policy


# -- simple presets --------------------------------------------------------------------------

def test_round_robin_cycles_evenly():
    assert picks(RoundRobin(), backends(0, 0, 0), 300) == {"b0": 100, "b1": 100, "b2": 100}


def test_least_request_picks_the_least_loaded_and_spreads_ties():
    assert LeastRequest(random.Random(1)).pick(backends(5, 1, 3), Req(), NOW).name == "b1"
    spread = picks(LeastRequest(random.Random(3)), backends(2, 2, 9), 1000)
    assert set(spread) == {"b0", "b1"} and min(spread.values()) > 400


def test_weighted_is_nginx_smooth_round_robin():
    fleet = backends(0, 0, 0, weights=(5, 1, 1))
    policy = Weighted()
    sequence = "".join(policy.pick(fleet, Req(), NOW).name[1] for _ in range(7))
    assert sequence == "0010200"  # interleaved, not 0000012 (nginx's documented example)
    assert picks(policy, fleet, 700) == {"b0": 500, "b1": 100, "b2": 100}


def test_tiered_reproduces_seed_004_weights():
    assert tiered_weight(0.10, 0, 0, 0) == 100
    assert tiered_weight(0.80, 0, 0, 0) == 60
    assert tiered_weight(0.86, 0, 0, 0) == 30
    assert tiered_weight(0.95, 0, 0, 0) == 10
    assert tiered_weight(0.10, 3, 0, 0) == 60          # a queue: one step down
    assert tiered_weight(0.10, 3, 9, 2) == 10          # three steps: 100 → 60 → 30 → 10
    assert tiered_weight(0.10, 0, 8, 0) == 100         # "running > 8", not >= 8


def test_tiered_is_weighted_least_conn():
    fleet = backends(2, 1)
    fleet[0].load = load(kv=0.1)    # weight 100: 2/100
    fleet[1].load = load(kv=0.95)   # weight 10: 1/10
    policy = Tiered(RoutingSpec(policy="tiered"), 3.0, random.Random(1))
    assert policy.pick(fleet, Req(), NOW).name == "b0"
    fleet[1].load = load(kv=0.95, at=NOW - 10)  # stale: weight 100 again (1/100)
    assert policy.pick(fleet, Req(), NOW).name == "b1"


# -- load-aware scoring ----------------------------------------------------------------------

def test_load_aware_prefers_headroom_and_short_queues():
    fleet = backends(0, 0, 0)
    fleet[0].load = load(kv=0.9)
    fleet[1].load = load(waiting=3)
    fleet[2].load = load(kv=0.2, running=2)
    assert picks(load_aware(), fleet, 50) == {"b2": 50}


def test_requests_sent_since_the_scrape_count_as_load():
    """A burst between two scrapes spreads: each request sent raises its backend's
    estimated running count, though the scraped figures have not moved."""
    fleet = backends(0, 0, 0)
    for backend in fleet:
        backend.load = load()
    policy = load_aware(weights=ScorerWeights(in_flight=0))  # engine signals alone
    for _ in range(30):
        policy.pick(fleet, Req(), NOW).in_flight += 1
    assert [b.in_flight for b in fleet] == [10, 10, 10]


def test_a_queueing_engine_gets_new_requests_counted_as_waiting():
    fleet = backends(4, 0)
    fleet[0].load = load(waiting=1, running=8, in_flight=2)   # 2 more sent since: 3 waiting
    fleet[1].load = load(waiting=2, running=8)
    scene = load_aware().scene(NOW)
    assert queue(fleet[0], fleet[0].load, scene) == 1 / 4 \
        < queue(fleet[1], fleet[1].load, scene) == 1 / 3


def test_stale_or_missing_signals_degrade_visibly_never_as_zero():
    fleet = backends(0, 0)
    fleet[0].load = load(waiting=50, kv=0.99, at=NOW - 10)   # stale: not believed
    fleet[1].load = load(kv=None)                            # this server has no KV gauge
    policy = load_aware()
    stale = policy.explain(fleet[0], NOW)
    assert stale["fresh"] is False and stale["degraded"] is True
    assert stale["scores"]["queue"] is None and stale["scores"]["in_flight"] == 1.0
    assert stale["score"] == 1.0  # rated on what is known (in flight), not on a silent 0
    partial = policy.explain(fleet[1], NOW)
    assert partial["scores"]["kv_cache"] is None and partial["scores"]["queue"] == 1.0
    policy.pick(fleet, Req(), NOW)
    assert policy.degraded_picks == 1


def test_load_aware_with_no_signals_at_all_is_least_request():
    fleet = backends(3, 1, 2)
    assert picks(load_aware(), fleet, 20) == {"b1": 20}


# -- pickers ---------------------------------------------------------------------------------

def test_pickers():
    fleet = backends(0, 0, 0)
    rng = random.Random(5)
    tied = Counter(max_score([(0.5, fleet[0]), (0.5, fleet[1]), (0.1, fleet[2])], rng).name
                   for _ in range(1000))
    assert set(tied) == {"b0", "b1"} and min(tied.values()) > 400
    shares = Counter(weighted_random([(3.0, fleet[0]), (1.0, fleet[1]), (0.0, fleet[2])],
                                     rng).name for _ in range(4000))
    assert 2800 < shares["b0"] < 3200 and shares["b2"] == 0
    # Of any two, the better: the worst of three is never picked.
    chosen = Counter(power_of_two([(0.9, fleet[0]), (0.5, fleet[1]), (0.1, fleet[2])],
                                  rng).name for _ in range(1000))
    assert chosen["b2"] == 0 and chosen["b0"] > chosen["b1"] > 0


# -- affinity --------------------------------------------------------------------------------

SYSTEM = "You are a helpful assistant for the ACME knowledge base. " * 20


def chat(*turns: str) -> dict:
    return {"model": "m", "messages": [{"role": "system", "content": SYSTEM},
                                       *({"role": "user", "content": t} for t in turns)]}


def test_prefix_key_is_the_prompt_start():
    assert prefix_key(chat("a"), 512) == prefix_key(chat("b", "c"), 512)  # a shared system
    assert prefix_key(chat("a"), 512) != prefix_key({"messages": [
        {"role": "system", "content": "other " * 200}]}, 512)
    assert prefix_key({"prompt": "x" * 600}, 512) == prefix_key({"prompt": "x" * 700}, 512)
    assert prefix_key({"prompt": [1, 2, 3]}, 512) is None   # token ids: nothing to key on
    assert prefix_key({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 512) is None


def test_rendezvous_moves_only_the_keys_of_a_backend_that_leaves():
    fleet = backends(0, 0, 0, 0)
    keys = [session_key(f"user-{i}") for i in range(2000)]
    before = {k: rendezvous(k, fleet).name for k in keys}
    assert min(Counter(before.values()).values()) > 400       # spread evenly
    after = {k: rendezvous(k, fleet[:3]).name for k in keys}  # b3 leaves
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "b3" for k in moved)


def test_prefix_aware_keeps_a_prefix_on_one_backend_unless_it_is_overloaded():
    fleet = backends(0, 0, 0)
    for backend in fleet:
        backend.load = load()
    policy = build_policy(RoutingSpec(policy="prefix_aware"), 3.0, random.Random(1))
    request = Req(prefix_key=prefix_key(chat("hello"), 512))
    home = policy.pick(fleet, request, NOW)
    for _ in range(3):  # some load on it does not move the prefix away
        home.in_flight += 1
        assert policy.pick(fleet, request, NOW) is home
    home.load = load(waiting=5)  # overloaded (routing.overload.waiting: 4)
    assert policy.pick(fleet, request, NOW) is not home


def test_session_stickiness_holds_until_the_backend_is_overloaded():
    fleet = backends(0, 0, 0)
    policy = build_policy(RoutingSpec(policy="least_request",
                                      session=SessionSpec(header="x-session-id")),
                          3.0, random.Random(2))
    assert isinstance(policy, Sticky)
    request = Req(session_key=session_key("conversation-42"))
    home = policy.pick(fleet, request, NOW)
    home.in_flight = 5  # least_request alone would leave it
    assert picks(policy, fleet, 20, request) == {home.name: 20}
    home.max_in_flight = 5  # at its cap: overloaded
    assert policy.pick(fleet, request, NOW) is not home
    assert policy.pick(fleet, Req(), NOW) is not home  # no session: the inner policy


def test_policies_by_name():
    for name, kind in (("round_robin", RoundRobin), ("least_request", LeastRequest),
                       ("weighted", Weighted), ("tiered", Tiered), ("load_aware", Scoring),
                       ("prefix_aware", Scoring)):
        policy = build_policy(RoutingSpec(policy=name))
        assert isinstance(policy, kind) and policy.name == name


def test_every_policy_the_config_offers_is_in_the_table():
    assert set(POLICIES) == set(get_args(RoutingSpec.model_fields["policy"].annotation))


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("session", [None, SessionSpec(header="x-session-id")])
def test_every_policy_answers_the_whole_protocol(name, session):
    """Plain or in session stickiness: a scoring policy explains its scores and counts its
    degraded picks, and a reload's new policy counts on from the old one's; the others say
    None to both."""
    fleet = backends(0, 0)
    fleet[0].load = load(at=NOW - 10)  # stale: a scoring pick is degraded
    policy = build_policy(RoutingSpec(policy=name, session=session), 3.0, random.Random(1))
    assert policy.name == name and policy.wants_session is (session is not None)
    assert policy.wants_prefix is (name == "prefix_aware")
    assert policy.pick(fleet, Req(), NOW) in fleet
    scores = name in ("load_aware", "prefix_aware")
    rating = policy.explain(fleet[0], NOW)
    assert (rating["degraded"] is True) if scores else rating is None
    assert policy.degraded_picks == (1 if scores else None)
    successor = build_policy(RoutingSpec(policy=name, session=session), 3.0)
    successor.continue_from(policy)
    assert successor.degraded_picks == (1 if scores else None)
    fresh = build_policy(RoutingSpec(policy="load_aware"), 3.0)
    fresh.continue_from(successor)  # from a policy that did not count: from 0
    assert fresh.degraded_picks == (1 if scores else 0)
