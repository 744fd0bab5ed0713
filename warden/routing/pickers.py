"""Pickers: given each candidate's score (higher is better), choose one."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warden.fleet.backend import Backend

Scored = Sequence[tuple[float, "Backend"]]
Picker = Callable[[Scored, random.Random], "Backend"]

# Scores closer than this are a tie (float noise must not decide).
TIE = 1e-9


def one_of(tied: Sequence[Backend], rng: random.Random) -> Backend:
    """One of equally good backends, at random (so equal backends share a burst)."""
    return tied[0] if len(tied) == 1 else tied[int(rng.random() * len(tied))]


def max_score(scored: Scored, rng: random.Random) -> Backend:
    """The best score; a tie is broken at random."""
    best = max(score for score, _ in scored)
    return one_of([backend for score, backend in scored if score >= best - TIE], rng)


def weighted_random(scored: Scored, rng: random.Random) -> Backend:
    """At random, in proportion to the scores (all zero: uniformly)."""
    total = sum(score for score, _ in scored)
    if total <= 0:
        return scored[int(rng.random() * len(scored))][1]
    point = rng.random() * total
    for score, backend in scored:
        point -= score
        if point < 0:
            return backend
    return scored[-1][1]


def power_of_two(scored: Scored, rng: random.Random) -> Backend:
    """Two candidates at random; the better of them (Mitzenmacher's power of two choices:
    near the best choice's balance without every replica herding onto the same backend)."""
    if len(scored) == 1:
        return scored[0][1]
    first, second = rng.sample(range(len(scored)), 2)
    a, b = scored[first], scored[second]
    return a[1] if a[0] >= b[0] else b[1]


PICKERS: dict[str, Picker] = {
    "max": max_score, "weighted_random": weighted_random, "power_of_two": power_of_two,
}
