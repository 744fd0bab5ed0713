"""OTLP receivers for the traces' tests: one that decodes what a real exporter sends (OTLP over
HTTP, protobuf, decoded with opentelemetry-proto), and a collector that hangs."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.harness import wait_until


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind is not None else None


class ReceivedSpan:
    """One span as the collector got it: ids as hex, attributes as a dict."""

    def __init__(self, span, resource: dict) -> None:
        self.name = span.name
        self.kind = span.kind
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex()
        self.start = span.start_time_unix_nano
        self.end = span.end_time_unix_nano
        self.attributes = {a.key: _value(a.value) for a in span.attributes}
        self.events = [(e.name, e.time_unix_nano) for e in span.events]
        self.status = span.status.code
        self.resource = resource

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


class OtlpReceiver:
    """POST /v1/traces on a free loopback port, in threads of its own."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.took(request, dict(self.headers))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.headers: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def took(self, request: ExportTraceServiceRequest, headers: dict) -> None:
        with self.lock:
            self.headers.append(headers)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value)
                            for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [ReceivedSpan(s, resource) for s in scope_spans.spans]

    def wait_for(self, count: int) -> list[ReceivedSpan]:
        wait_until(lambda: len(self.spans) >= count, what=f"{count} spans exported")
        with self.lock:
            return list(self.spans)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HangingCollector:
    """Accepts connections and reads, and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/traces"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # (kept open, never read from, never answered)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
