"""Streams: relayed as they arrive, ended exactly once, aborted upstream when the client goes."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import threading
import time

import pytest
from openai import OpenAI

from tests.harness import GatewayThread, http, stream_error, wait_until

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "go"}], "stream": True}


def _normalise(stream: bytes) -> bytes:
    """Less what differs by design: the time, and the id vLLM builds from X-Request-Id (the
    gateway sends a client's id made unique: `<id>.<its prefix>-<n>`)."""
    stream = re.sub(rb'"created":\d+', b'"created":0', stream)
    return re.sub(rb'"id":"chatcmpl-same-id[^"]*"', b'"id":"chatcmpl-same-id"', stream)


def test_stream_is_byte_faithful(gateway, fleet):
    """The gateway relays the backend's event stream byte for byte."""
    body = json.dumps({**BODY, "max_tokens": 12,
                       "stream_options": {"include_usage": True}}).encode()
    headers = {"Content-Type": "application/json", "X-Request-Id": "same-id"}
    _, via_gateway_headers, via_gateway = http("POST", f"{gateway.url}/v1/chat/completions",
                                               body, headers)
    direct_status, direct_headers, direct = http("POST", f"{fleet.url(0)}/v1/chat/completions",
                                                 body, headers)
    assert direct_status == 200
    assert _normalise(via_gateway) == _normalise(direct)
    assert via_gateway_headers["content-type"] == direct_headers["content-type"]
    assert via_gateway.endswith(b"data: [DONE]\n\n")


def test_events_arrive_as_generated(slow_gateway):
    """No buffering: with a token every 20 ms, events reach the client spread over time."""
    client = OpenAI(base_url=f"{slow_gateway.url}/v1", api_key="x", max_retries=0)
    arrivals = []
    for _ in client.chat.completions.create(model="sim-model", messages=BODY["messages"],
                                            stream=True, max_tokens=15):
        arrivals.append(time.monotonic())
    assert len(arrivals) == 16
    # 15 tokens 20 ms apart take >= 280 ms to generate; a buffering proxy would deliver them
    # in one burst at the end.
    assert arrivals[-1] - arrivals[0] > 0.2


def stream_on_a_socket(gateway, events: int) -> socket.socket:
    """A stream requested on a raw socket, read until `events` events have come."""
    request = json.dumps(BODY).encode()
    port = int(gateway.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(request), request))
    received = b""
    while received.count(b"data: ") < events:
        received += sock.recv(65536)
    return sock


def test_client_disconnect_aborts_upstream(slow_gateway, slow_fleet):
    with stream_on_a_socket(slow_gateway, 3):
        assert slow_gateway.in_flight() == 1
    slow_gateway.wait_idle()
    # The engine stopped the generation (nothing running, far fewer than its 500 tokens);
    # as real vLLM, it counts the request in no finished reason.
    wait_until(lambda: sum(slow_fleet.metric(i, "vllm:num_requests_running")
                           for i in range(3)) == 0, what="the sim to see the abort")
    assert sum(slow_fleet.metric(i, "vllm:generation_tokens_total") for i in range(3)) < 100
    assert sum(slow_fleet.metric(i, "vllm:request_success_total") for i in range(3)) == 0
    assert slow_gateway.metric("warden_stream_verdicts_total", 'verdict="client_abort"') == 1


def test_node_killed_mid_stream_gives_error_event(slow_gateway, slow_fleet):
    client = OpenAI(base_url=f"{slow_gateway.url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-model", messages=BODY["messages"], stream=True)
    node = slow_fleet.node_of(raw.headers)
    stream = raw.parse()
    next(iter(stream))
    slow_fleet.kill_node(node)
    error = stream_error(stream)
    assert "backend" in error.message
    slow_gateway.wait_idle()
    assert slow_gateway.metric("warden_stream_verdicts_total", 'verdict="upstream_eof"') == 1


def test_stream_ends_exactly_once_under_load(gateway):
    """Many concurrent streams: each ends once, and every counter returns to zero."""
    import concurrent.futures

    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    before = gateway.metric("warden_stream_verdicts_total", 'verdict="complete"')

    def one(i: int) -> int:
        return sum(1 for c in client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": f"n{i}"}], stream=True,
            max_tokens=5) if c.choices)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(one, range(64)))
    assert counts == [6] * 64
    assert gateway.metric("warden_stream_verdicts_total", 'verdict="complete"') - before == 64
    assert gateway.in_flight() == 0


@pytest.mark.parametrize("stream", [True, False])
def test_http10_client_gets_no_chunked_body(gateway, stream):
    """HTTP/1.0 has no chunked encoding: the body ends when the connection closes."""
    body = json.dumps({**BODY, "stream": stream, "max_tokens": 3}).encode()
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    if stream:
        assert payload.startswith(b"data: ") and payload.endswith(b"data: [DONE]\n\n")
    else:
        assert json.loads(payload)["usage"]["completion_tokens"] == 3


def test_both_sides_have_nagle_off(slow_gateway):
    """TCP_NODELAY on the client's connection and on the upstream one, from the event loop
    (a proxy without it delays every first token by Nagle's ~40 ms: DESIGN.md, vllm-router).
    Checked on the sockets of a stream in flight."""
    with stream_on_a_socket(slow_gateway, 2):
        def nodelay(transport) -> int:
            return transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                 socket.TCP_NODELAY)

        def flags() -> list[int]:
            relays = list(slow_gateway.gateway.forwarder.active)
            assert len(relays) == 1
            return [nodelay(relays[0].client.transport), nodelay(relays[0].conn.transport)]

        assert slow_gateway.call(flags) == [1, 1]


class _CloseFramed(socketserver.BaseRequestHandler):
    """A backend that answers as an HTTP/1.0 server does: no Content-Length, not chunked,
    the body ending with the connection (a server behind another proxy may)."""

    def handle(self) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += self.request.recv(65536)
        path = request.split(b" ", 2)[1]
        body = (b'{"object":"list","data":[{"id":"sim-model","object":"model"}]}'
                if path == b"/v1/models" else
                b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":'
                b'{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":'
                b'{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}')
        self.request.sendall(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n")
        self.request.sendall(body)
        self.request.shutdown(socket.SHUT_WR)


def test_a_backend_that_ends_its_body_by_closing_is_relayed_whole():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CloseFramed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gw = GatewayThread({"backends": [{"name": "b", "url": f"http://127.0.0.1:"
                                                         f"{server.server_address[1]}"}]})
    try:
        reply = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) \
            .chat.completions.create(model="sim-model", messages=[{"role": "user",
                                                                   "content": "hi"}])
        assert reply.choices[0].message.content == "hi" and reply.usage.total_tokens == 4
    finally:
        gw.stop()
        server.shutdown()
        server.server_close()
