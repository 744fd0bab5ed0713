"""The edge's bounds over real sockets, however TCP splits the bytes: the request head (its
size, its field count) and the memory that request bodies hold across all connections."""

from __future__ import annotations

import json
import socket

import pytest

from tests.harness import GatewayThread, wait_until

CHAT = b"/v1/chat/completions"
BODY = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                   "max_tokens": 1}).encode()


def port_of(gw: GatewayThread) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def request(target: bytes = CHAT, fields: bytes = b"", body: bytes = BODY) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (target, fields, len(body), body))


def send_and_read(port: int, data: bytes, piece: int | None = None) -> bytes:
    """Send `data` in one write (or in writes of `piece` bytes), then read until the gateway
    closes its side. A gateway that answers early and closes while bytes are still coming
    must have let the client read its answer (lingering close): no reset."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            if piece is None:
                sock.sendall(data)
            else:
                for at in range(0, len(data), piece):
                    sock.sendall(data[at:at + piece])
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed while the rest was still coming: read the answer
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def error_of(reply: bytes) -> tuple[int, dict, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)["error"]


# -- the head --------------------------------------------------------------------------------

OVERSIZED_HEADS = {
    "a 70 KiB field": request(fields=b"x-big: " + b"a" * 70 * 1024 + b"\r\n"),
    "10,000 fields": request(fields=b"".join(b"x-%d: 1\r\n" % i for i in range(10_000))),
    "a 100 KB request line": request(target=CHAT + b"?q=" + b"a" * 100_000),
    "101 small fields": request(fields=b"".join(b"x-%d: 1\r\n" % i for i in range(97))),
}


@pytest.mark.parametrize("piece", [None, 1000], ids=["one write", "many writes"])
@pytest.mark.parametrize("what", list(OVERSIZED_HEADS))
def test_an_oversized_head_is_431_however_it_arrives(gateway, what, piece):
    reply = send_and_read(port_of(gateway), OVERSIZED_HEADS[what], piece)
    status, headers, error = error_of(reply)
    assert status == 431 and error["code"] == "headers_too_large", error
    assert headers["connection"] == "close"


def test_a_head_within_the_limits_is_served(gateway):
    # 60 KiB in 95 fields (the backend gets 96: X-Request-Id, X-Forwarded-For added,
    # Connection dropped).
    fields = b"x-big: " + b"a" * 60 * 1024 + b"\r\n" + b"".join(b"x-%d: 1\r\n" % i
                                                                for i in range(90))
    reply = send_and_read(port_of(gateway), request(fields=fields))
    assert reply.startswith(b"HTTP/1.1 200 ")


# -- request bodies in memory ----------------------------------------------------------------

@pytest.fixture
def budgeted(fleet):
    """At most 1 MiB per body and 1.5 MiB of bodies in memory across all connections."""
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "limits": {"max_body": "1MiB", "max_body_buffer": "1536KiB"}})
    yield gw
    gw.stop()


def held(gw: GatewayThread) -> float:
    return gw.metric("warden_request_body_bytes")


def refused(gw: GatewayThread, code: str) -> float:
    return gw.metric("warden_requests_refused_total", f'code="{code}"')


def chat_body(size: int) -> bytes:
    """A valid request body of exactly `size` bytes."""
    body = json.dumps({"model": "sim-model", "max_tokens": 1,
                       "messages": [{"role": "user", "content": ""}]}).encode()
    return body.replace(b'"content": ""', b'"content": "' + b"x" * (size - len(body)) + b'"')


def start_upload(gw: GatewayThread, length: int, sent: bytes = b"") -> socket.socket:
    """A connection whose request announced `length` body bytes and sent only `sent`."""
    sock = socket.create_connection(("127.0.0.1", port_of(gw)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (length, sent))
    return sock


def test_a_body_that_does_not_fit_the_budget_is_refused_before_it_is_sent(budgeted):
    assert budgeted.metric("warden_request_body_budget_bytes") == 1536 * 1024
    upload = start_upload(budgeted, 1_000_000, b"{" * 999_000)
    wait_until(lambda: held(budgeted) == 999_000, what="the upload's bytes held")
    # ~1 MB held: a second body of 1 MB does not fit; refused on its head alone.
    head_only = request(body=b"x" * 1_000_000)[:-1_000_000]
    status, headers, error = error_of(send_and_read(port_of(budgeted), head_only))
    assert status == 503 and error["code"] == "body_buffer_full", error
    assert headers["retry-after"] == "1"
    assert refused(budgeted, "body_buffer_full") == 1
    # The client that disconnects mid-upload gives what it held back.
    upload.close()
    wait_until(lambda: held(budgeted) == 0, what="the budget back to 0")
    reply = send_and_read(port_of(budgeted), request(
                                                     body=chat_body(1_000_000)))
    assert reply.startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: held(budgeted) == 0, what="the budget back to 0 after the answer")


def chunked_head() -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n")


def chunk(size: int) -> bytes:
    return b"%x\r\n%s\r\n" % (size, b" " * size)


def test_a_chunked_body_is_refused_as_soon_as_it_passes_max_body(budgeted):
    # Four chunks of 300,000 bytes pass 1 MiB with the fourth; the last chunk never comes.
    reply = send_and_read(port_of(budgeted), chunked_head() + chunk(300_000) * 4)
    status, _, error = error_of(reply)
    assert status == 413 and error["code"] == "payload_too_large"
    assert refused(budgeted, "payload_too_large") == 1
    wait_until(lambda: held(budgeted) == 0, what="the budget back to 0")


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_budget(budgeted):
    upload = start_upload(budgeted, 1_000_000, b" " * 999_000)
    try:
        wait_until(lambda: held(budgeted) == 999_000, what="the upload's bytes held")
        # ~1 MB + 300,000 fits in 1.5 MiB; + 600,000 does not.
        reply = send_and_read(port_of(budgeted), chunked_head() + chunk(300_000) * 2)
        status, headers, error = error_of(reply)
        assert status == 503 and error["code"] == "body_buffer_full"
        assert headers["retry-after"] == "1"
        assert held(budgeted) == 999_000
    finally:
        upload.close()
    wait_until(lambda: held(budgeted) == 0, what="the budget back to 0")


def test_a_body_is_held_until_its_answer_ends(slow_fleet):
    gw = GatewayThread({"backends": slow_fleet.backends_config()})
    try:
        body = json.dumps({"model": "sim-model", "stream": True, "max_tokens": 50,
                           "messages": [{"role": "user", "content": "go"}]}).encode()
        for leave_early in (False, True):
            sock = socket.create_connection(("127.0.0.1", port_of(gw)), timeout=10)
            sock.sendall(request(body=body))
            received = sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 ")
            assert held(gw) == len(body)  # streaming: the body is still in memory
            if not leave_early:
                while not received.endswith(b"0\r\n\r\n"):
                    received += sock.recv(65536)
                wait_until(lambda: held(gw) == 0, what="the body released")
            sock.close()
            wait_until(lambda: held(gw) == 0, what="the body released")
            gw.wait_idle()
    finally:
        gw.stop()
