"""What the data path allocates is freed by reference counting: no request, stream or client
connection leaves a reference cycle behind. The gateway's process relies on it (it collects
the young generation rarely, warden.run.settle_heap), and a cycle would hold a whole request,
body included, until the next collection."""

from __future__ import annotations

import gc
import json
import socket

import pytest

from tests.harness import GatewayThread
from warden.fleet import recent
from warden.fleet.recent import LARGE_BODY, RECENT_PER_BACKEND


def _request(stream: bool, content: str = "hi") -> bytes:
    body = json.dumps({"model": "sim-model", "stream": stream, "max_tokens": 5,
                       "messages": [{"role": "user", "content": content}]}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body))


def _exchange(port: int, request: bytes) -> bytes:
    """One request on a connection of its own, read to the end (the gateway closes it)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("response", ["none", "summary", "full"])
def test_requests_and_streams_leave_no_reference_cycles(fleet, response):
    gateway = GatewayThread({"backends": fleet.backends_config()[:1],
                             "recorder": {"response": response}})
    port = int(gateway.url.rsplit(":", 1)[1])
    requests = [_request(stream=False), _request(stream=True)]
    try:
        for request in requests:  # warm up: what is created once is not what we look for
            _exchange(port, request)
        gateway.wait_idle()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept, to be looked at
        try:
            for _ in range(20):
                for request in requests:
                    assert _exchange(port, request).startswith(b"HTTP/1.1 200 ")
            # The incident detector keeps each backend's last requests (its suspects): these
            # push the ones above out, so that they are freed (or found in a cycle) now.
            for _ in range(RECENT_PER_BACKEND + 1):
                _exchange(port, requests[0])
            gateway.wait_idle()
            gc.collect()
            cyclic = sorted({type(o).__qualname__ for o in gc.garbage
                             if type(o).__module__.startswith("warden.")})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert cyclic == []
    finally:
        gateway.stop()


def test_recent_exchanges_keep_their_requests_but_not_their_responses(fleet):
    """A backend's last exchanges stay in memory as its suspects, should it die: they keep
    their requests (the suspect list reads them), not the responses kept for the record."""
    backend = fleet.backends_config()[0]
    gateway = GatewayThread({"backends": [backend], "recorder": {"response": "full"}})
    port = int(gateway.url.rsplit(":", 1)[1])
    try:
        for request in (_request(stream=False), _request(stream=True)):
            assert _exchange(port, request).startswith(b"HTTP/1.1 200 ")
        gateway.wait_idle()
        kept = gateway.call(lambda: [(r.request.body, r.captured) for r in
                                     gateway.gateway.incidents.recent_of(backend["name"])])
        assert [captured for _, captured in kept] == [None, None]
        assert all(body.startswith(b'{"model": "sim-model"') for body, _ in kept)
    finally:
        gateway.stop()


def test_large_bodies_bound_the_bytes_recent_exchanges_hold(fleet, monkeypatch):
    """A large request trims its backend's recent exchanges to their byte budget, oldest
    first (here 4 MiB: the last two of four 1.5 MiB requests stay, and the small one after)."""
    monkeypatch.setattr(recent, "RECENT_BYTES_PER_BACKEND", 4 * LARGE_BODY)
    backend = fleet.backends_config()[0]
    # (1.5M characters cannot fit the sim's 4096-token context: the guard would refuse them
    # at the door, ctx-prompt-too-long, and they must reach the backend here.)
    gateway = GatewayThread({"backends": [backend], "recorder": {"enabled": False},
                             "limits": {"max_body": "8MiB"},
                             "guard": {"disable": ["ctx-prompt-too-long"]}})
    port = int(gateway.url.rsplit(":", 1)[1])
    try:
        large = [_request(stream=False, content=f"{i}" + "x" * (3 * LARGE_BODY // 2))
                 for i in range(4)]
        for request in [*large, _request(stream=False)]:
            _exchange(port, request)
        gateway.wait_idle()
        kept = gateway.call(lambda: [len(r.request.body) for r in
                                     gateway.gateway.incidents.recent_of(backend["name"])])
        assert len(kept) == 3 and kept[0] > LARGE_BODY and kept[1] > LARGE_BODY
        assert kept[2] < 1000
    finally:
        gateway.stop()
