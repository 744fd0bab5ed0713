"""Routing policies. Contract: `pick(candidates)` gets a non-empty list of backends that serve
the model and are available, and returns one of them. Pure apart from its own counter/RNG."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from warden.fleet.backend import Backend


class RoutingPolicy(Protocol):
    def pick(self, candidates: Sequence[Backend]) -> Backend: ...


class RoundRobin:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Backend]) -> Backend:
        self._next += 1
        return candidates[self._next % len(candidates)] if len(candidates) > 1 \
            else candidates[0]


class LeastRequest:
    """Fewest requests in flight from this gateway; ties broken at random so equal backends
    share the load instead of the first one taking every burst."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Backend]) -> Backend:
        if len(candidates) == 1:
            return candidates[0]
        fewest = min(b.in_flight for b in candidates)
        best = [b for b in candidates if b.in_flight == fewest]
        return best[0] if len(best) == 1 else best[int(self._rng.random() * len(best))]


POLICIES: dict[str, type[RoundRobin] | type[LeastRequest]] = {
    "round_robin": RoundRobin,
    "least_request": LeastRequest,
}


def build_policy(name: str, rng: random.Random | None = None) -> RoutingPolicy:
    return POLICIES[name](rng)
