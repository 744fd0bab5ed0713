"""The client side's metrics: request bodies in memory, and requests refused before they were
read whole. A collector of its own, registered beside `GatewayMetrics` once the server runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from warden.edge.server import HttpServer


class EdgeCollector:
    """A prometheus collector (by its `collect` method) of one `HttpServer`'s numbers."""

    def __init__(self, server: HttpServer):
        self._server = server

    def collect(self) -> Iterable[Metric]:
        bodies = self._server.bodies
        yield GaugeMetricFamily("warden_request_body_bytes", "Bytes of request bodies in "
                                "memory: being received (a Content-Length is reserved whole), "
                                "waiting, or in flight", value=bodies.held)
        yield GaugeMetricFamily("warden_request_body_budget_bytes", "What they may hold "
                                "together (limits.max_body_buffer)", value=bodies.limit)
        refused = CounterMetricFamily("warden_requests_refused", "Requests refused before "
                                      "they were read whole, by error code "
                                      "(body_buffer_full: 503 for want of memory)",
                                      labels=["code"])
        for code, n in sorted(self._server.refused.items()):
            refused.add_metric([code], n)
        yield refused
