"""What a routing policy is to the rest of the gateway: the forwarder (via routing's filters),
the gateway's affinity keys, /admin/backends, the metrics and a reload all use this alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from warden.fleet.backend import Backend


class Keyed(Protocol):
    """What a policy reads of a request: the affinity keys the gateway computed for it (None:
    not asked for, or nothing to key on)."""

    prefix_key: int | None
    session_key: int | None


class RoutingPolicy(Protocol):
    """Chooses one of the backends that passed routing's filters (`routing.filters`).

    - `name`: the preset (`routing.policy`), as /admin/backends and the reload log show it.
    - `wants_prefix`, `wants_session`: whether `pick` reads the request's `prefix_key`,
      `session_key`; the gateway computes a key (a look at the body) only when asked.
    - `pick(candidates, request, now)`: one of `candidates` (a non-empty list of backends
      that passed the filters). Runs per request: pure apart from the policy's own counters
      and RNG, no I/O, no clock read (`now` is `time.monotonic()`).
    - `explain(backend, now)`: how the policy rates `backend` now (`score`, and what it is
      made of), for /admin/backends (`routing`) and the `warden_backend_score` gauge; None
      for a policy that does not score (neither shows one then). Never called per request.
    - `degraded_picks`: the picks made while some candidate's load signal was missing or
      stale (the `warden_routing_degraded_picks` counter); None for a policy that does not
      count them (no such counter then).
    - `continue_from(previous)`: take over the counters of `previous`, the policy this one
      replaces at a reload, so that Prometheus never sees them go backwards.

    A wrapper (session stickiness) keeps the name, the scores and the counters of the policy
    it wraps: it answers `explain`, `degraded_picks` and `continue_from` with that policy's.
    """

    name: str
    wants_prefix: bool
    wants_session: bool

    def pick(self, candidates: Sequence[Backend], request: Keyed, now: float) -> Backend: ...

    def explain(self, backend: Backend, now: float) -> dict | None: ...

    @property
    def degraded_picks(self) -> int | None: ...

    def continue_from(self, previous: RoutingPolicy) -> None: ...
