"""Routing policies, as filter → score → pick. Routing's filters (`routing.filters`: serves
the model, healthy, breaker closed, not draining, under its in-flight cap, allowed by the
guard) leave the candidates; a policy (`routing.protocol.RoutingPolicy`, its contract) scores
what is left and picks one.

Presets (`routing.policy`, built by name from `POLICIES`): round_robin, least_request,
weighted (nginx's smooth weighted round robin on `backends[].weight`), tiered (step weights
from the engine's metrics, with nginx's weighted least_conn: the baseline it replaces),
load_aware (the default: every load signal, max score) and prefix_aware (load_aware + prefix
affinity). `routing.session` wraps any of them in session stickiness (`Sticky`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from warden.config.schema import RoutingSpec, ScorerWeights
from warden.fleet.backend import Backend
from warden.routing.affinity import rendezvous
from warden.routing.pickers import PICKERS, one_of
from warden.routing.protocol import Keyed, RoutingPolicy
from warden.routing.scorers import Scene, overloaded
from warden.routing.scoring_policy import Scoring


class Unscored:
    """What a policy that neither scores backends nor counts degraded picks answers besides
    `pick` (see `RoutingPolicy`)."""

    wants_prefix = False
    wants_session = False

    def explain(self, backend: Backend, now: float) -> dict | None:
        return None

    @property
    def degraded_picks(self) -> int | None:
        return None

    def continue_from(self, previous: RoutingPolicy) -> None:
        """Nothing to take over: it has no counters."""


class RoundRobin(Unscored):
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        self._next += 1
        return candidates[self._next % len(candidates)]


class LeastRequest(Unscored):
    """Fewest requests in flight from this gateway; ties broken at random so equal backends
    share the load instead of the first one taking every burst."""

    name = "least_request"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        fewest = min(b.in_flight for b in candidates)
        return one_of([b for b in candidates if b.in_flight == fewest], self._rng)


class Weighted(Unscored):
    """nginx's smooth weighted round robin: over any `sum(weights)` picks, each backend gets
    exactly its weight's share, interleaved (5:1:1 gives a a b a c a a, not a a a a a b c)."""

    name = "weighted"

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


class Tiered(Unscored):
    """The common nginx setup (a timer rewrites nginx weights from /metrics), without its
    reloads: weights from each backend's last fresh scrape (100 when it has none, as nginx
    keeps its last config), and nginx's weighted least_conn over them (fewest in flight per
    weight)."""

    name = "tiered"

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


class Sticky:
    """Session stickiness over any policy: requests with a session key go to the backend the
    key hashes to among the candidates, unless it is overloaded; the rest, and those, go
    to the inner policy. Its name, scores and counters are the inner policy's."""

    def __init__(self, inner: RoutingPolicy, spec: RoutingSpec, stale_after: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.wants_prefix = inner.wants_prefix
        self.wants_session = True
        self._scene = Scene(0.0, stale_after, spec.load_scale, spec.overload)

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend:
        key = request.session_key
        if key is not None:
            target = rendezvous(key, candidates)
            self._scene.now = now
            if not overloaded(target, self._scene):
                return target
        return self.inner.pick(candidates, request, now)

    def explain(self, backend: Backend, now: float) -> dict | None:
        return self.inner.explain(backend, now)

    @property
    def degraded_picks(self) -> int | None:
        return self.inner.degraded_picks

    def continue_from(self, previous: RoutingPolicy) -> None:
        self.inner.continue_from(previous)


# The scoring presets' default weights.
LOAD_AWARE = ScorerWeights()
PREFIX_AWARE = ScorerWeights(prefix=3.0)

# A policy built from the routing settings, how stale a load signal may be, and the RNG.
PolicyMaker = Callable[[RoutingSpec, float, random.Random], RoutingPolicy]


def scoring(name: str, default: ScorerWeights) -> PolicyMaker:
    """A scoring preset: its own `default` weights, with those `routing.weights` sets over
    them (only those it sets: `weights: {queue: 3}` in `prefix_aware` keeps its prefix
    weight), and `routing.picker` (else max)."""

    def make(spec: RoutingSpec, stale_after: float, rng: random.Random) -> RoutingPolicy:
        weights = default
        if spec.weights is not None:
            weights = default.model_copy(update={
                field: getattr(spec.weights, field) for field in spec.weights.model_fields_set})
        return Scoring(name, weights, PICKERS[spec.picker or "max"], spec, stale_after, rng)

    return make


# `routing.policy` -> its maker. (The config's choices, `RoutingSpec.policy`, are these names.)
POLICIES: dict[str, PolicyMaker] = {
    "round_robin": lambda spec, stale_after, rng: RoundRobin(),
    "least_request": lambda spec, stale_after, rng: LeastRequest(rng),
    "weighted": lambda spec, stale_after, rng: Weighted(),
    "tiered": Tiered,
    "load_aware": scoring("load_aware", LOAD_AWARE),
    "prefix_aware": scoring("prefix_aware", PREFIX_AWARE),
}


def build_policy(spec: RoutingSpec, stale_after: float = 3.0,
                 rng: random.Random | None = None) -> RoutingPolicy:
    """The policy `routing.policy` names, in session stickiness when `routing.session` is
    set."""
    policy = POLICIES[spec.policy](spec, stale_after, rng or random.Random())
    return Sticky(policy, spec, stale_after) if spec.session is not None else policy
