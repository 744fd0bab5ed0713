"""The parts of one gateway that live as long as its process, each built once, with what it
needs, by `build_parts` (app.wiring)."""

from __future__ import annotations

from dataclasses import dataclass

from warden.admin.traffic import Traffic
from warden.app.quarantine import QuarantineParts
from warden.exchange import Listeners, RequestIds
from warden.fleet.discovery import Discovery
from warden.fleet.fact_learner import FactLearner
from warden.fleet.watch import HealthChecker, Scraper
from warden.forensics.incidents import IncidentDetector
from warden.observe.access_log import AccessLog
from warden.observe.loop_probe import LoopProbe
from warden.observe.metrics import GatewayMetrics
from warden.observe.trace_listener import Tracing
from warden.proxy.forwarder import Forwarder
from warden.record.recorder import Recorder
from warden.tenancy.client_keys import ClientKeys
from warden.tenancy.key_store import KeyStore
from warden.tenancy.limiter import Limiter


@dataclass(frozen=True)
class Parts:
    recorder: Recorder | None         # the flight recorder (None: off)
    quarantine: QuarantineParts | None
    incidents: IncidentDetector
    metrics: GatewayMetrics
    listeners: Listeners              # told of every exchange: metrics, recorder, incidents
    forwarder: Forwarder              # and the requests in flight, across reloads
    facts: FactLearner
    discovery: Discovery
    scraper: Scraper
    health: HealthChecker
    ids: RequestIds                   # one id sequence for the process, across reloads
    keys: ClientKeys                  # the client keys: each config's, and the store's
    key_store: KeyStore | None        # keys in PostgreSQL (None: the config's only)
    limiter: Limiter | None           # the limits of keys, tenants, addresses (None: off)
    traffic: Traffic                  # the admin page's live traffic, guard decisions
    probe: LoopProbe                  # the event loop's lag and stalls, by cause
    access_log: AccessLog | None      # one line per sampled request (None: off at start)
    tracing: Tracing | None           # a span per sampled request (None: off at start)
