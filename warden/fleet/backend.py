"""One vLLM server as the gateway sees it."""

from __future__ import annotations

from collections import deque

from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.proxy.headers import UpstreamTarget
from warden.upstream.pool import ConnectionPool


class Backend:
    """Identity (name, address), its connection pool, and live state.

    `in_flight` is changed in exactly one place (the forwarder: +1 when a request is sent, -1
    when its relay ends, which happens exactly once), so it cannot leak. Models come from
    config, or else from the backend's /v1/models. Times are `time.monotonic()`.
    """

    def __init__(self, spec: BackendSpec, timeouts: TimeoutsSpec):
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.host_header = spec.address.encode()
        self.target = UpstreamTarget(spec.address, spec.api_key)
        self.pool = ConnectionPool(
            spec.host, spec.port, max_connections=spec.max_connections,
            connect_timeout=timeouts.connect, pool_timeout=timeouts.pool,
            keepalive_timeout=timeouts.upstream_keepalive)
        self.in_flight = 0
        self.requests_sent = 0
        self.configured_models = frozenset(spec.models) if spec.models is not None else None
        self.discovered_models: frozenset[str] = frozenset()
        self.model_cards: list[dict] = []
        self.vllm_version = spec.vllm_version  # else learned from its /version
        self.safe_for = frozenset(spec.safe_for)  # guard rules it may take requests of
        self.canary = spec.canary                 # takes quarantined requests
        self.reachable = True
        self.unreachable_until = 0.0
        self.last_error: str | None = None
        # The last requests sent here (the incident detector's deque, when there is one).
        self.recent: deque | None = None

    @property
    def models(self) -> frozenset[str]:
        if self.configured_models is not None:
            return self.configured_models
        return self.discovered_models

    def available(self, now: float) -> bool:
        return self.reachable or now >= self.unreachable_until

    def mark_unreachable(self, now: float, cooldown: float, reason: str) -> None:
        self.reachable = False
        self.unreachable_until = now + cooldown
        self.last_error = reason

    def mark_reachable(self) -> None:
        self.reachable = True
        self.last_error = None

    def learn_models(self, cards: list[dict]) -> bool:
        """Take the backend's /v1/models cards; True if its set of model ids changed."""
        before = self.models
        self.model_cards = cards
        self.discovered_models = frozenset(
            card["id"] for card in cards if isinstance(card.get("id"), str))
        return self.models != before

    def snapshot(self, now: float) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "models": sorted(self.models),
            "in_flight": self.in_flight,
            "requests_sent": self.requests_sent,
            "available": self.available(now),
            "reachable": self.reachable,
            "last_error": self.last_error,
            "open_connections": self.pool.open_count,
        }
