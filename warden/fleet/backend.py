"""One vLLM server as the gateway sees it."""

from __future__ import annotations

import ssl
import zlib
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from warden.config.schema import BackendSpec, HealthSpec, TimeoutsSpec
from warden.fleet.breaker import CLOSED, CircuitBreaker, PassiveEjection
from warden.fleet.deployment import Deployment, declared_deployment
from warden.fleet.signals import EngineLoad
from warden.upstream.pool import ConnectionPool
from warden.upstream.target import UpstreamTarget
from warden.upstream.tls import client_context

if TYPE_CHECKING:
    from warden.exchange import Exchange
    from warden.fleet.model_facts import LearnedModel

# No cap on requests in flight.
UNLIMITED = 2**62


def pool_limits(spec: BackendSpec, timeouts: TimeoutsSpec,
                contexts: dict[tuple[Path | None, bool], ssl.SSLContext]) -> dict:
    """Its connection pool's limits and TLS, as the config sets them. `contexts`: the TLS
    contexts made so far for a fleet, by CA bundle and verification, which it adds to (one
    each: loading one costs ~20 ms of the event loop, and a reload of 25 https backends made
    25)."""
    tls = None
    if spec.tls:
        wanted = (spec.tls_ca, spec.tls_verify)
        tls = contexts.get(wanted)
        if tls is None:
            tls = contexts[wanted] = client_context(spec.tls_ca, spec.tls_verify)
    return {"max_connections": spec.max_connections, "connect_timeout": timeouts.connect,
            "pool_timeout": timeouts.pool, "keepalive_timeout": timeouts.upstream_keepalive,
            "tls": tls}


class Backend:
    """Identity (name, address), its connection pool, and live state.

    `in_flight` is changed only by the forwarder: +1 when a request is sent (counted from its
    choice while it waits for a connection, given back if none comes), -1 when its relay
    ends, which happens exactly once; so it cannot leak. Models come from config, or else
    from the backend's /v1/models. Times are `time.monotonic()`.

    Whether it may take a request: `clear` says, in one attribute read, that nothing stands
    in the way (reachable, healthy, breaker closed, not ejected, not draining); only when it
    is False does `admits(now)` look at each reason, which may clear it again (a cooldown
    over, a breaker turning half-open). Every state change goes through `_settle`.
    """

    def __init__(self, spec: BackendSpec, timeouts: TimeoutsSpec,
                 health: HealthSpec | None = None, recent: deque[Exchange] | None = None,
                 limits: dict | None = None):
        """`limits`: its pool's (`pool_limits`), if made already."""
        health = health if health is not None else HealthSpec()
        self.name = spec.name
        self.name_hash = zlib.crc32(spec.name.encode())  # for rendezvous hashing
        self.address = spec.address
        self.host_header = spec.address.encode()
        self.pool = ConnectionPool(spec.host, spec.port,
                                   **(limits or pool_limits(spec, timeouts, {})))
        self.in_flight = 0
        self.requests_sent = 0
        self.discovered_models: frozenset[str] = frozenset()
        self.model_cards: list[dict] = []
        # What its cards say that the model facts depend on: (id, max_model_len, parent) each.
        self.card_shape: tuple[tuple[object, object, object], ...] = ()
        # Per model, what its API server told of it (fleet/model_facts); `facts_epoch` grows
        # at every change of these or of `card_shape` (the guard caches facts by it).
        self.learned_facts: dict[str, LearnedModel] = {}
        self.facts_epoch = 0
        self.vllm_version = spec.vllm_version  # else learned from its /version
        # What it is beyond its version (fleet/deployment): declared in its config, learned
        # from its /metrics, and the two merged (declared wins), which the guard reads.
        self.learned_deployment = Deployment()
        self.declared_deployment = Deployment()
        self.deployment = Deployment()
        self.breaker: CircuitBreaker | None = None
        self._breaker_rounds = 0  # (those of a breaker a reload turned off)
        self.ejection = PassiveEjection(health.passive)
        self._configure(spec, health)
        self.reachable = True
        self.unreachable_until = 0.0
        self.last_error: str | None = None
        self.healthy = True           # the active health check's verdict
        self.draining = False         # no new requests; those in flight finish
        self.clear = True
        # The engine's load, from its /metrics (None until scraped, or when not scraped).
        self.load: EngineLoad | None = None
        self.scrape_error: str | None = None
        self.failures = 0             # failed requests, in total (a counter)
        self.failing = False          # failed since its last success (a success resets it)
        # The last requests sent here: the incident detector's suspects when it dies
        # (fleet.recent; None without a detector).
        self.recent = recent

    def _configure(self, spec: BackendSpec, health: HealthSpec) -> None:
        """What the config says of it (at start, and again at each reload)."""
        self.spec = spec
        self.target = UpstreamTarget(spec.address, spec.api_key)
        self.configured_models = frozenset(spec.models) if spec.models is not None else None
        self.safe_for = frozenset(spec.safe_for)  # guard rules it may take requests of
        self.canary = spec.canary                 # takes quarantined requests
        self.declared_deployment = declared_deployment(spec.deployment)
        self.deployment = self.declared_deployment.over(self.learned_deployment)
        self.weight = spec.weight
        self.max_in_flight = spec.max_in_flight or UNLIMITED
        if not health.breaker.enabled:
            if self.breaker is not None:
                self._breaker_rounds = self.breaker.round
            self.breaker = None
        elif self.breaker is None:
            self.breaker = CircuitBreaker(health.breaker, self._breaker_rounds)
        else:
            self.breaker.spec = health.breaker  # its state (open, failures) carries on
        self.ejection.spec = health.passive

    def reconfigure(self, spec: BackendSpec, timeouts: TimeoutsSpec, health: HealthSpec,
                    now: float, limits: dict | None = None) -> None:
        """A config reload kept it (same name, same URL): take the new settings and keep the
        live state — requests in flight, load, health, breaker, ejection, learned models,
        drain — and the open connections. `limits`: its pool's, if made already."""
        self._configure(spec, health)
        if spec.vllm_version is not None:
            self.vllm_version = spec.vllm_version
        self.pool.reconfigure(**(limits or pool_limits(spec, timeouts, {})))
        self._settle(now)

    @property
    def models(self) -> frozenset[str]:
        if self.configured_models is not None:
            return self.configured_models
        return self.discovered_models

    def available(self, now: float) -> bool:
        """Can take a request now (in-flight cap aside)."""
        return self.clear or self.admits(now)

    def admits(self, now: float) -> bool:
        """The full test behind `clear`, reason by reason; settles `clear` again. Past the
        other reasons, a breaker that is not closed may still let a probe through."""
        if not self.reachable and now >= self.unreachable_until:
            self.reachable = True  # may be tried again: the next connect tells
        unblocked = self._unblocked(now)
        breaker = self.breaker
        self.clear = unblocked and (breaker is None or breaker.state == CLOSED)
        return self.clear or (unblocked and breaker is not None and breaker.allows(now))

    def state(self, now: float) -> str:
        """One word for operators: what keeps it from taking requests, if anything."""
        if self.draining:
            return "draining"
        if not self.healthy:
            return "unhealthy"
        if not (self.reachable or now >= self.unreachable_until):
            return "unreachable"
        if self.ejection.ejected(now):
            return "ejected"
        if self.breaker is not None and self.breaker.state != CLOSED:
            return f"breaker_{self.breaker.state}"
        return "ready"

    def _unblocked(self, now: float) -> bool:
        """Nothing but the breaker (if any) stands in the way."""
        return (self.reachable and self.healthy and not self.draining
                and not self.ejection.ejected(now))

    def _settle(self, now: float) -> None:
        breaker = self.breaker
        self.clear = self._unblocked(now) and (breaker is None or breaker.state == CLOSED)

    def mark_unreachable(self, now: float, cooldown: float, reason: str) -> None:
        self.reachable = False
        self.unreachable_until = now + cooldown
        self.last_error = reason
        self.clear = False

    def mark_reachable(self, now: float) -> None:
        self.reachable = True
        self.last_error = None
        self._settle(now)

    def set_healthy(self, healthy: bool, now: float, reason: str | None = None) -> None:
        self.healthy = healthy
        if reason is not None:
            self.last_error = reason
        self._settle(now)

    def set_draining(self, draining: bool, now: float) -> None:
        self.draining = draining
        self._settle(now)

    # -- request outcomes (the forwarder reports each request once) -------------------------

    def sent(self) -> int:
        """A request is being sent; if it is a half-open breaker's probe, its round's number
        (breaker.py), else 0. (The forwarder asks only when the backend is not `clear`.)"""
        return self.breaker.sent() if self.breaker is not None else 0

    def succeeded(self, now: float, probe: int) -> None:
        self.failing = False
        if self.breaker is not None:
            self.breaker.succeeded(probe)
        self._settle(now)

    def probe_abandoned(self, probe: int) -> None:
        """A probe ended with no verdict on the backend (the client left): free its slot."""
        if self.breaker is not None:
            self.breaker.abandoned(probe)

    def failed(self, now: float, probe: int, reason: str) -> None:
        self.failing = True
        self.failures += 1
        self.last_error = reason
        if self.breaker is not None:
            self.breaker.failed(now, probe)
        self.ejection.failed(now)
        self._settle(now)

    def learn_models(self, cards: list[dict]) -> bool:
        """Take the backend's /v1/models cards; True if its set of model ids changed."""
        before = self.models
        self.model_cards = cards
        self.discovered_models = frozenset(
            card["id"] for card in cards if isinstance(card.get("id"), str))
        shape = tuple((card.get("id"), card.get("max_model_len"), card.get("parent"))
                      for card in cards)
        if shape != self.card_shape:  # (not the whole cards: vLLM dates each answer)
            self.card_shape = shape
            self.facts_epoch += 1
        return self.models != before

    def learned(self, facts: dict[str, LearnedModel]) -> None:
        """What its API server told of its models, learned anew (fleet/fact_learner)."""
        if facts != self.learned_facts:
            self.learned_facts = facts
            self.facts_epoch += 1

    def learn_deployment(self, learned: Deployment) -> None:
        """What its /metrics proved of its deployment, read anew at each scrape."""
        if learned != self.learned_deployment:
            self.learned_deployment = learned
            self.deployment = self.declared_deployment.over(learned)

    def snapshot(self, now: float) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "models": sorted(self.models),
            "state": self.state(now),
            "in_flight": self.in_flight,
            "requests_sent": self.requests_sent,
            "failures": self.failures,
            "available": self.available(now),
            "reachable": self.reachable,
            "healthy": self.healthy,
            "draining": self.draining,
            "breaker": self.breaker.snapshot(now) if self.breaker is not None else None,
            "ejected_for": round(max(0.0, self.ejection.ejected_until - now), 3),
            "weight": self.weight,
            "max_in_flight": self.max_in_flight if self.max_in_flight < UNLIMITED else None,
            "load": self.load.as_dict(now) if self.load is not None else None,
            "scrape_error": self.scrape_error,
            "last_error": self.last_error,
            "open_connections": self.pool.open_count,
        }
