"""The part of a gateway that a config reload replaces, built whole from one `Settings`.

A `Runtime` is the fleet (its registry), the routing policy, the guard and the admission
stages built on them; `Current` holds the one new requests see. Building one has no
effect on the running gateway except one, on purpose: a backend the new config keeps (same
name, same URL) is the same `Backend` object, reconfigured, so its live state — requests in
flight, load, health, breaker — carries over. Everything that can fail on a new config fails
before that (the settings are validated, the policy and the guard are built first).

What a reload cannot change in a running process (the listening socket, the flight
recorder's files, the quarantine's store, the key store) is named by
`restart_only_changes`; the gateway keeps the old ones and says so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from warden.admission.build import build_stages
from warden.admission.stage import Stage
from warden.config.schema import Settings
from warden.exchange import Exchange
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard
from warden.guard.probation import Probation
from warden.routing.policy import build_policy
from warden.routing.protocol import RoutingPolicy
from warden.tenancy.keys import KeyRing
from warden.tenancy.limiter import Limiter


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    backends: BackendRegistry
    policy: RoutingPolicy
    guard: Guard | None
    stages: tuple[Stage, ...]


class Current:
    """The runtime new requests see (and the admin API, the incident scraper): one cell,
    swapped whole by a reload, read by whoever needs the running config at the time."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime


def build_runtime(settings: Settings, probation: Probation | None,
                  previous: Runtime | None = None,
                  recent_of: Callable[[str], deque[Exchange]] | None = None,
                  keys: KeyRing | None = None, limiter: Limiter | None = None) -> Runtime:
    """A runtime for `settings`; with `previous`, the backends it keeps are reused and the
    counters that metrics export (guard decisions, degraded picks) continue, so Prometheus
    never sees them go backwards. `keys`: the gateway's client keys (the config's part is
    swapped when the runtime is: app.Gateway.activate); `limiter`: the gateway's limits
    (which outlive the runtime: a reload changes the limits of subjects, not their counts)."""
    policy = build_policy(settings.routing, settings.scrape.staleness)
    guard = Guard(settings.guard, probation) if settings.guard.mode != "off" else None
    if previous is not None:
        if guard is not None and previous.guard is not None:
            guard.decisions = previous.guard.decisions
        policy.continue_from(previous.policy)
    backends = BackendRegistry(settings, previous.backends if previous is not None else None,
                               recent_of)
    return Runtime(settings, backends, policy, guard,
                   build_stages(settings, guard, backends, policy, keys, limiter))


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """The settings that differ between `old` and `new` but only take effect at a restart."""
    changed = [name for name in ("listen", "admin_listen", "recorder", "loop_probe")
               if getattr(old, name) != getattr(new, name)]
    if (old.tls is None) != (new.tls is None):  # (a new certificate serves new connections)
        changed.append("tls (on or off)")
    if _quarantine_store(old) != _quarantine_store(new):
        changed.append("guard.quarantine (its store)")
    if old.auth.store != new.auth.store:
        changed.append("auth.store")
    if (uses_limits(old), _limits_store(old)) != (uses_limits(new), _limits_store(new)):
        changed.append("rate_limits (their store; or limits turned on or off)")
    return changed + _observing_changes(old, new)


def _observing_changes(old: Settings, new: Settings) -> list[str]:
    """Logs and traces: a reload changes the access log's and the traces' sample rates
    (and turns them off); the rest is set up at the start."""
    changed = []
    was, now = old.logging, new.logging
    if (was.format, was.level, was.queue_size) != (now.format, now.level, now.queue_size):
        changed.append("logging (format, level, queue_size)")
    if now.access_log.enabled and not was.access_log.enabled:
        changed.append("logging.access_log.enabled (turned on)")
    if new.tracing.enabled and not old.tracing.enabled:
        changed.append("tracing.enabled (turned on)")
    elif old.tracing.enabled and new.tracing.enabled and \
            old.tracing.model_copy(update={"sample": 0.0}) != \
            new.tracing.model_copy(update={"sample": 0.0}):
        changed.append("tracing (its exporter: endpoint, headers, service_name, timeout, "
                       "queue_size)")
    return changed


def _limits_store(settings: Settings) -> object:
    """rate_limits but what each runtime's stages read (per_ip_rpm, prices: a reload)."""
    return settings.rate_limits.model_copy(update={"per_ip_rpm": None, "prices": {}})


def _quarantine_store(settings: Settings) -> tuple:
    spec = settings.guard.quarantine
    active = settings.guard.mode != "off" and spec.enabled
    return (active, spec.store, spec.redis_url, spec.key_prefix, spec.max_implicated) \
        if active else (False,)


def uses_limits(settings: Settings) -> bool:
    """Whether a gateway of these settings counts limits (a limiter lives as long as it)."""
    return settings.auth.mode == "required" or settings.rate_limits.per_ip_rpm is not None
