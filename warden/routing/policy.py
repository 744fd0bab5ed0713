"""Routing policies, as filter → score → pick. The forwarder filters (serves the model,
healthy, breaker closed, not draining, under its in-flight cap, allowed by the guard); a
policy scores what is left and picks one.

Contract: `pick(candidates, request, now)` gets a non-empty list of backends that passed the
filters and returns one of them; `request` carries the affinity keys the gateway computed
(`prefix_key`, `session_key`) when the policy asked for them (`wants_prefix`,
`wants_session`). Pure apart from its own counters and RNG: no I/O, no clock read.

Presets (`routing.policy`): round_robin, least_request, weighted (nginx's smooth weighted
round robin on `backends[].weight`), tiered (step weights from the engine's
metrics, with nginx's weighted least_conn: the baseline it replaces), load_aware (the
default: every load signal, max score) and prefix_aware (load_aware + prefix affinity).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from warden.config.schema import RoutingSpec, ScorerWeights
from warden.fleet.backend import Backend
from warden.routing.affinity import rendezvous
from warden.routing.pickers import PICKERS, Picker, one_of
from warden.routing.scorers import SCORERS, Scene, fresh_load, overloaded


class Keyed(Protocol):
    prefix_key: int | None
    session_key: int | None


class RoutingPolicy(Protocol):
    name: str
    wants_prefix: bool
    wants_session: bool

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend: ...


class RoundRobin:
    name = "round_robin"
    wants_prefix = False
    wants_session = False

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        self._next += 1
        return candidates[self._next % len(candidates)]


class LeastRequest:
    """Fewest requests in flight from this gateway; ties broken at random so equal backends
    share the load instead of the first one taking every burst."""

    name = "least_request"
    wants_prefix = False
    wants_session = False

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        fewest = min(b.in_flight for b in candidates)
        return one_of([b for b in candidates if b.in_flight == fewest], self._rng)


class Weighted:
    """nginx's smooth weighted round robin: over any `sum(weights)` picks, each backend gets
    exactly its weight's share, interleaved (5:1:1 gives a a b a c a a, not a a a a a b c)."""

    name = "weighted"
    wants_prefix = False
    wants_session = False

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        current = self._current
        total = 0
        best: Backend | None = None
        best_value = 0
        for backend in candidates:
            value = current.get(backend.name, 0) + backend.weight
            current[backend.name] = value
            total += backend.weight
            if best is None or value > best_value:
                best, best_value = backend, value
        assert best is not None
        current[best.name] -= total
        return best


def tiered_weight(kv_usage: float, waiting: float, running: float, preempted: float) -> int:
    """Seed 004's `compute_weight`, as it is: a step on KV-cache usage, then one step down
    for each of: a queue, preemptions since the last look, more than 8 running."""
    weight = 10 if kv_usage >= 0.92 else 30 if kv_usage >= 0.85 else 60 if kv_usage >= 0.75 \
        else 100
    for pressed in (waiting > 0, preempted > 0, running > 8):
        if pressed:
            weight = {100: 60, 60: 30, 30: 10}.get(weight, 10)
    return weight


class Tiered:
    """The common nginx setup (a timer rewrites nginx weights from /metrics), without its
    reloads: weights from each backend's last fresh scrape (100 when it has none, as nginx
    keeps its last config), and nginx's weighted least_conn over them (fewest in flight per
    weight)."""

    name = "tiered"
    wants_prefix = False
    wants_session = False

    def __init__(self, spec: RoutingSpec, stale_after: float, rng: random.Random) -> None:
        self._spec = spec
        self._stale_after = stale_after
        self._rng = rng

    def weight(self, backend: Backend, now: float) -> int:
        load = backend.load
        if load is None or now - load.at > self._stale_after:
            return 100
        return tiered_weight(load.kv_usage or 0.0, load.waiting or 0.0, load.running or 0.0,
                             load.preemptions or 0.0)

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        ratios = [(b.in_flight / self.weight(b, now), b) for b in candidates]
        lowest = min(ratio for ratio, _ in ratios)
        return one_of([b for ratio, b in ratios if ratio == lowest], self._rng)


class Scoring:
    """Filter → score → pick over the load signals: each backend's score is the weighted
    mean of the scorers that can rate it (see `warden.routing.scorers`). A pick made while
    some signal was missing or stale for some candidate counts in `degraded_picks`: the
    policy then leans on what it still knows (at least the gateway's own in-flight count)."""

    def __init__(self, name: str, weights: ScorerWeights, picker: Picker, spec: RoutingSpec,
                 stale_after: float, rng: random.Random) -> None:
        self.name = name
        self.scorers = [(name, weight, SCORERS[name]) for name, weight in weights
                        if weight > 0]
        self.wants_prefix = weights.prefix > 0
        self.wants_session = False
        self._picker = picker
        self._spec = spec
        self._stale_after = stale_after
        self._rng = rng
        self.degraded_picks = 0

    def scene(self, now: float) -> Scene:
        return Scene(now, self._stale_after, self._spec.load_scale, self._spec.overload)

    def score(self, backend: Backend, scene: Scene) -> tuple[float, bool]:
        """(score, whether some scorer could not rate it)."""
        load = fresh_load(backend, scene)
        total = weights = 0.0
        degraded = False
        for _, weight, scorer in self.scorers:
            value = scorer(backend, load, scene)
            if value is None:
                degraded = True
                continue
            total += weight * value
            weights += weight
        return (total / weights if weights else 0.0), degraded

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        scene = self.scene(now)
        if self.wants_prefix and request.prefix_key is not None:
            scene.prefix_target = rendezvous(request.prefix_key, candidates)
        scored = []
        degraded = False
        for backend in candidates:
            value, short = self.score(backend, scene)
            degraded = degraded or short
            scored.append((value, backend))
        if degraded:
            self.degraded_picks += 1
        return self._picker(scored, self._rng)

    def explain(self, backend: Backend, now: float) -> dict:
        """Each scorer's rating of `backend` now (no affinity: that is per request)."""
        scene = self.scene(now)
        load = fresh_load(backend, scene)
        score, degraded = self.score(backend, scene)
        ratings = {name: scorer(backend, load, scene) for name, _, scorer in self.scorers}
        return {"score": round(score, 4), "degraded": degraded, "fresh": load is not None,
                "scores": {name: None if value is None else round(value, 4)
                           for name, value in ratings.items()}}


class Sticky:
    """Session stickiness over any policy: requests with a session key go to the backend the
    key hashes to among the candidates, unless it is overloaded; the rest, and those, go
    to the inner policy."""

    def __init__(self, inner: RoutingPolicy, spec: RoutingSpec, stale_after: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.wants_prefix = inner.wants_prefix
        self.wants_session = True
        self._scene = Scene(0.0, stale_after, spec.load_scale, spec.overload)

    def __getattr__(self, name: str):
        """What the inner policy offers beyond `pick` (`explain`, `degraded_picks`)."""
        return getattr(self.inner, name)

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        key = request.session_key
        if key is not None:
            target = rendezvous(key, candidates)
            self._scene.now = now
            if not overloaded(target, self._scene):
                return target
        return self.inner.pick(candidates, request, now)


# The scoring presets' defaults: (weights, picker).
LOAD_AWARE = ScorerWeights()
PREFIX_AWARE = ScorerWeights(prefix=3.0)


def build_policy(spec: RoutingSpec, stale_after: float = 3.0,
                 rng: random.Random | None = None) -> RoutingPolicy:
    rng = rng or random.Random()
    policy: RoutingPolicy
    if spec.policy == "round_robin":
        policy = RoundRobin()
    elif spec.policy == "least_request":
        policy = LeastRequest(rng)
    elif spec.policy == "weighted":
        policy = Weighted()
    elif spec.policy == "tiered":
        policy = Tiered(spec, stale_after, rng)
    else:
        default = PREFIX_AWARE if spec.policy == "prefix_aware" else LOAD_AWARE
        policy = Scoring(spec.policy, spec.weights or default, PICKERS[spec.picker or "max"],
                         spec, stale_after, rng)
    if spec.session is not None:
        policy = Sticky(policy, spec, stale_after)
    return policy
