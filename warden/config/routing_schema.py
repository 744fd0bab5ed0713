"""The settings of routing and backend health: policies and scorer weights, the /metrics
scraper, active checks, passive ejection and the circuit breaker."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from warden.config.spec import Duration, Spec


class ScorerWeights(Spec):
    """How much each load signal counts in a scoring policy (0 turns one off). Each scorer
    gives a backend a score in [0, 1]; a backend's score is their weighted mean over the
    signals that are known and fresh (see `warden.routing.scorers`)."""

    kv_cache: float = Field(default=1.0, ge=0)     # KV-cache headroom
    queue: float = Field(default=2.0, ge=0)        # requests waiting in the engine
    running: float = Field(default=1.0, ge=0)      # requests running in the engine
    preemptions: float = Field(default=1.0, ge=0)  # preemptions since the last scrape
    in_flight: float = Field(default=3.0, ge=0)    # this gateway's requests in flight there
    prefix: float = Field(default=0.0, ge=0)       # holds the request's prompt prefix


class SessionSpec(Spec):
    """Session stickiness: requests with the same key go to the same backend while it can
    take them (not overloaded, not filtered out)."""

    header: str | None = None      # e.g. x-session-id
    user_field: bool = False       # the body's `user` field

    @model_validator(mode="after")
    def _some_key(self) -> SessionSpec:
        if self.header is None and not self.user_field:
            raise ValueError("set header, user_field or both")
        return self


class OverloadSpec(Spec):
    """When a backend is too loaded for an affinity (prefix or session) to hold."""

    kv_cache: float = Field(default=0.92, ge=0, le=1)
    waiting: int = Field(default=4, ge=0)


class RoutingSpec(Spec):
    policy: Literal["round_robin", "least_request", "weighted", "tiered", "load_aware",
                    "prefix_aware"] = "load_aware"
    # The scoring policies' picker; each preset has its own default (see the README).
    picker: Literal["max", "weighted_random", "power_of_two"] | None = None
    # The scoring policies' weights; each preset has its own default.
    weights: ScorerWeights | None = None
    # How much of the prompt's start identifies its prefix (prefix affinity), in characters.
    prefix_chars: int = Field(default=512, ge=16)
    # Running requests at which the `running` scorer gives 0.5 (and in-flight requests, for
    # the `in_flight` scorer).
    load_scale: float = Field(default=8.0, gt=0)
    session: SessionSpec | None = None
    overload: OverloadSpec = OverloadSpec()


class ScrapeSpec(Spec):
    """Each backend's /metrics, read for the load-aware policies."""

    enabled: bool = True
    interval: Duration = Field(default=1.0, ge=0.1)
    # A backend's signals older than this are stale: the policies stop using them (and say
    # so). Default: three intervals.
    stale_after: Duration | None = None

    @property
    def staleness(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.interval


class ActiveHealthSpec(Spec):
    enabled: bool = True
    path: str = "/health"
    interval: Duration = Field(default=2.0, ge=0.1)
    timeout: Duration = Field(default=2.0, gt=0)
    # Consecutive failed checks that make a backend unhealthy, and passed ones that bring it
    # back.
    unhealthy_after: int = Field(default=2, ge=1)
    healthy_after: int = Field(default=1, ge=1)

    @field_validator("path")
    @classmethod
    def _request_path(cls, value: str) -> str:
        # (Written into the request line as it is: `health` or `/he alth` failed every check,
        # and every backend left the rotation.)
        if not re.fullmatch(r"/[\x21-\x7e]*", value):
            raise ValueError("a path starting with / (no spaces or control characters)")
        return value


class PassiveHealthSpec(Spec):
    """nginx's max_fails/fail_timeout: `max_fails` failures within `fail_timeout` take a
    backend out of rotation for `fail_timeout` (0 turns it off)."""

    max_fails: int = Field(default=3, ge=0)
    fail_timeout: Duration = 10.0


class BreakerSpec(Spec):
    """closed → (`failures` in a row) → open for `open_for` → half-open: at most `probes`
    requests at once; `probes` successes close it, a failure opens it again."""

    enabled: bool = True
    failures: int = Field(default=5, ge=1)
    open_for: Duration = 30.0
    probes: int = Field(default=3, ge=1)


class HealthSpec(Spec):
    active: ActiveHealthSpec = ActiveHealthSpec()
    passive: PassiveHealthSpec = PassiveHealthSpec()
    breaker: BreakerSpec = BreakerSpec()
