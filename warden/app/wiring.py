"""Wiring: every part of a gateway built once, in order, with the parts it needs (none is
handed another later; a reload only reconfigures, app.gateway); and the path table built for
each runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from warden.admin.fleet import FleetAdmin, Reload
from warden.admin.keys import KeysAdmin
from warden.admin.live import LiveAdmin
from warden.admin.own import OwnEndpoints
from warden.admin.page import AdminPage
from warden.admin.quarantine import QuarantineAdmin
from warden.admin.routes import AdminRoutes
from warden.admin.traffic import Traffic
from warden.admission.chain import Admission
from warden.admission.cors import Cors
from warden.app.parts import Parts
from warden.app.quarantine import QuarantineParts
from warden.config import Settings
from warden.edge.server import ServerLimits
from warden.errors import UpstreamError
from warden.exchange import Capture, ExchangeListener, Listeners, RequestIds
from warden.fleet.discovery import Discovery
from warden.fleet.fact_learner import FactLearner
from warden.fleet.watch import HealthChecker, Scraper
from warden.forensics.incidents import IncidentDetector
from warden.forensics.listener import IncidentListener
from warden.observe.access_log import AccessLog
from warden.observe.loop_probe import IDLE_INTERVAL, LoopProbe
from warden.observe.metrics import GatewayMetrics
from warden.observe.trace_listener import Tracing
from warden.proxy.forwarder import Forwarder
from warden.proxy.relay import Relay
from warden.record.recorder import Recorder
from warden.routes import Routes
from warden.runtime import Current, Runtime, build_runtime, uses_limits
from warden.tenancy.client_keys import ClientKeys
from warden.tenancy.key_store import KeyStore
from warden.tenancy.keys import KeyRing
from warden.tenancy.limiter import Limiter, build_limiter
from warden.tenancy.settle import LimitSettler
from warden.tenancy.usage import tenant_budgets
from warden.upstream.fetch import fetch


def build_parts(settings: Settings) -> tuple[Parts, Current]:
    """The process-long parts and the first runtime. Their order is their dependencies'."""
    recorder = Recorder(settings.recorder) if settings.recorder.enabled else None
    # (Two closures name what is built after them: the quarantine asks the incident
    # detector which backends are down; the detector's last scrape reads the runtime of
    # its time.)
    quarantine = build_quarantine(settings, lambda name: name in incidents.down)
    active: set[Relay] = set()  # the requests in flight: the forwarder's, listed here
    incidents = IncidentDetector(
        settings.recorder.dir,
        lambda backend: [relay for relay in active if relay.backend == backend],
        scrape=lambda name: read_metrics(current, name),
        on_opened=quarantine.implicate if quarantine is not None else None)
    keys = ClientKeys()  # (fed each config's keys as its runtime is activated)
    key_store = KeyStore(settings.auth.store, keys) if settings.auth.store is not None \
        else None
    limiter = build_limiter(settings.rate_limits, log=logging.getLogger("warden.limits")) \
        if uses_limits(settings) else None
    runtime = build_runtime(settings, quarantine.probation if quarantine is not None else None,
                            recent_of=incidents.recent_of, keys=keys.ring, limiter=limiter)
    current = Current(runtime)
    scraper = Scraper(settings.scrape, on_lost=incidents.restarted)
    metrics = GatewayMetrics(runtime.backends, time.monotonic, recorder, scraper,
                             runtime.guard, runtime.policy,
                             limits_metrics_state(limiter, current) if limiter is not None
                             else None,
                             incidents.counts)
    traffic = Traffic()  # (the admin page's live traffic and guard decisions)
    access_log = AccessLog(settings.logging.access_log) \
        if settings.logging.access_log.enabled else None
    tracing = build_tracer(settings, current)
    listeners = Listeners(listeners_in_order(traffic, recorder, incidents, limiter,
                                             access_log, tracing, metrics))
    capture = Capture.of(settings.recorder.response) if recorder is not None else Capture.NONE
    if limiter is not None:  # (a plain response's usage settles its tokens)
        capture = max(capture, Capture.BODIES)
    forwarder = Forwarder(settings, runtime.backends, runtime.policy, listeners, capture, active,
                          on_retry=metrics.retried, on_connect_failed=incidents.connect_failed,
                          on_probe_end=quarantine.probe_ended if quarantine is not None
                          else None)
    facts = FactLearner(settings)
    discovery = Discovery(runtime.backends, settings, on_lost=incidents.connect_failed,
                          on_reachable=incidents.reachable, learner=facts)
    health = HealthChecker(settings.health.active, on_lost=incidents.connect_failed,
                           on_alive=incidents.alive_again)
    interval = settings.loop_probe.interval
    probe = LoopProbe(busy=serving(active, metrics), busy_interval=interval,
                      idle_interval=max(IDLE_INTERVAL, interval))
    note_work(probe, recorder, scraper)
    parts = Parts(recorder, quarantine, incidents, metrics, listeners, forwarder, facts,
                  discovery, scraper, health, RequestIds(), keys, key_store, limiter, traffic,
                  probe, access_log, tracing)
    return parts, current


def listeners_in_order(traffic: Traffic, recorder: Recorder | None,
                       incidents: IncidentDetector, limiter: Limiter | None,
                       access_log: AccessLog | None, tracing: Tracing | None,
                       metrics: GatewayMetrics) -> list[ExchangeListener]:
    """Who hears each exchange's end, in order: the recorder before those that read what it
    parsed of a response (the settlement, the access log, a span), the metrics last (they
    count the usage the others read). A part that is off is not a listener."""
    ears: list[ExchangeListener] = [traffic]
    if recorder is not None:
        ears.append(recorder)
    ears.append(IncidentListener(incidents))
    if limiter is not None:
        ears.append(LimitSettler(limiter))
    if access_log is not None:
        ears.append(access_log)
    if tracing is not None:
        ears.append(tracing)
    ears.append(metrics)
    return ears


def serving(active: set[Relay], metrics: GatewayMetrics) -> Callable[[], bool]:
    """Whether requests are in flight or ended since the last call (the loop probe ticks
    often then, seldom when idle)."""
    seen = [0]

    def busy() -> bool:
        ended = metrics.ended_total
        moved, seen[0] = ended != seen[0], ended
        return moved or bool(active)

    return busy


def note_work(probe: LoopProbe, recorder: Recorder | None, scraper: Scraper) -> None:
    """The work that can hold the event loop in one piece tells the probe when it ran."""
    scraper.note = probe.note
    if recorder is not None:
        recorder.note = probe.note
        recorder.file_sink.writer.note = probe.note_thread


def limits_metrics_state(limiter: Limiter, current: Current) -> Callable[[], dict]:
    """What the limits' metrics read at each scrape: the store's state, the 429s counted, and
    the budgets of the running config's tenants (observe/limits_metrics.py)."""
    def state() -> dict:
        return {**limiter.state(), "refusals": dict(limiter.refusals),
                "budgets": tenant_budgets(limiter.budgets(), current.runtime.settings.auth,
                                          time.time())}
    return state




def build_tracer(settings: Settings, current: Current) -> Tracing | None:
    """The tracer (`tracing.enabled`; it imports the OpenTelemetry SDK only then). The
    backend's address on a span is looked up in the runtime of the span's end."""
    if not settings.tracing.enabled:
        return None
    from warden.observe.tracing import build_tracing  # (the OpenTelemetry SDK: only now)

    def address(name: str) -> tuple[str, int] | None:
        backend = current.runtime.backends.named(name)
        if backend is None:
            return None
        host, _, port = backend.address.rpartition(":")
        return host, int(port)

    return build_tracing(settings.tracing, address)


def build_routes(runtime: Runtime, parts: Parts, reload: Reload | None,
                 admin_apart: bool) -> tuple[Routes, Routes | None]:
    """The path tables of one runtime: its admission chain, its admin views; the second is
    the admin listener's, with `admin_apart` (else None: the admin API is on the main
    listener). (Whether it is apart is the process's, from its start: a reload cannot move
    it.)"""
    guard = runtime.guard
    spec = runtime.settings.cors
    cors = Cors(spec) if spec is not None else None
    admission = Admission(runtime.stages, parts.forwarder, runtime.backends, parts.listeners,
                          parts.ids, cors)
    quarantine = QuarantineAdmin(guard.probation if guard is not None else None)
    fleet = FleetAdmin(runtime.policy, runtime.backends, reload,
                       guard.models if guard is not None else None)
    auth = runtime.settings.auth
    keys = KeysAdmin(parts.keys, parts.key_store, required=auth.mode == "required",
                     limiter=parts.limiter)
    own = OwnEndpoints(runtime.backends, parts.metrics, quarantine, keys,
                       parts.limiter.state if parts.limiter is not None else None)
    own.note = parts.probe.note
    limits = parts.limiter.state if parts.limiter is not None else None
    live = LiveAdmin(parts.traffic, parts.forwarder.active, parts.incidents, limits)
    admin = AdminRoutes(fleet, quarantine, KeyRing.admins(auth), keys, live, AdminPage())
    public = auth.metrics == "public"
    if not admin_apart:
        return Routes(admission, own, admin, parts.ids, metrics_public=public, cors=cors), None
    return (Routes(admission, own, None, parts.ids, metrics_public=public, checks=admin,
                   cors=cors),
            Routes(None, own, admin, parts.ids, metrics_public=public))


async def read_metrics(current: Current, name: str) -> str:
    """A backend's `/metrics` text, read once (the incident detector's last look at a dying
    engine, which often still answers)."""
    backend = current.runtime.backends.named(name)
    if backend is None:
        raise UpstreamError(f"no backend named {name}")
    status, body = await fetch(backend.pool, "GET", "/metrics", backend.host_header,
                               timeout=current.runtime.settings.timeouts.connect)
    if status != 200:
        raise UpstreamError(f"/metrics answered {status}")
    return body.decode("utf-8", "replace")


def build_quarantine(settings: Settings,
                     is_down: Callable[[str], bool]) -> QuarantineParts | None:
    spec = settings.guard.quarantine
    if settings.guard.mode == "off" or not spec.enabled:
        return None
    return QuarantineParts(settings, is_down)


def server_limits(settings: Settings) -> ServerLimits:
    limits = settings.limits
    return ServerLimits(max_body=limits.max_body, max_body_buffer=limits.max_body_buffer,
                        max_header_bytes=limits.max_header_bytes,
                        max_header_count=limits.max_header_count,
                        keepalive_timeout=settings.timeouts.client_keepalive)


def admin_url(host: str, port: int, tls: bool = False) -> str:
    """Where this gateway's admin API is reached from its own host."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
