"""The scoring policies (load_aware, prefix_aware): score every candidate on the load signals,
then pick (see `warden.routing.scorers`, `warden.routing.pickers`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from warden.config.schema import RoutingSpec, ScorerWeights
from warden.fleet.backend import Backend
from warden.routing.affinity import rendezvous
from warden.routing.pickers import Picker
from warden.routing.protocol import Keyed, RoutingPolicy
from warden.routing.scorers import SCORERS, Scene, fresh_load


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

    def continue_from(self, previous: RoutingPolicy) -> None:
        """Its degraded picks count on from those of the policy it replaces (if it counted)."""
        picks = previous.degraded_picks
        if picks is not None:
            self.degraded_picks = picks
