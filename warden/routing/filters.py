"""Routing's filter step: which of the backends serving a request's model can take it now, and
the one it goes to (the policy picks when several can).

Cost rule: the common case (a model served by one backend that is clear, under its cap,
untried and not restricted by the guard) is decided by the forwarder without calling this;
here the candidates' list is the only allocation. Nothing awaits.
"""

from __future__ import annotations

from warden.fleet.backend import Backend
from warden.routing.protocol import Keyed, RoutingPolicy


def choose_backend(serving: list[Backend], tried: tuple[str, ...], only: frozenset[str] | None,
                   request: Keyed, policy: RoutingPolicy, now: float) -> Backend | None:
    """The backend `request` goes to, of `serving` (the backends serving its model; not
    empty), or None when none can take it. The filters: can take a request now (reachable,
    healthy, breaker, not draining, not ejected: `clear` says all at once, else `admits(now)`
    looks at each reason), under its in-flight cap, not `tried` yet (the names of the
    backends it was offered to), allowed by the guard (`only`: None when it did not
    restrict the request). `policy` picks among several."""
    candidates = [b for b in serving
                  if (b.clear or b.admits(now)) and b.in_flight < b.max_in_flight
                  and b.name not in tried and (only is None or b.name in only)]
    if not candidates:
        return None
    return candidates[0] if len(candidates) == 1 else policy.pick(candidates, request, now)
