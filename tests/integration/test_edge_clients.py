"""Clients at the edge, over real sockets: one that half-closes after its request is still
answered; a request with two values of a single-valued field is refused, never merged."""

from __future__ import annotations

import json
import socket

import pytest

from tests.harness import GatewayThread

BODY = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                   "max_tokens": 3}).encode()
STREAM = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                     "max_tokens": 3, "stream": True}).encode()


def request(body: bytes = BODY, fields: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\n%sContent-Length: %d\r\n\r\n%s" % (fields, len(body), body))


def half_closed(gw: GatewayThread, data: bytes) -> bytes:
    """Send `data`, shut the sending side down (SHUT_WR), read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])),
                                  timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_a_half_closed_client_gets_its_answer(gateway):
    reply = half_closed(gateway, request())
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["object"] == "chat.completion"
    gateway.wait_idle()


def test_a_half_closed_client_gets_its_whole_stream(gateway):
    reply = half_closed(gateway, request(STREAM))
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"data: [DONE]\n\n" in reply and reply.endswith(b"0\r\n\r\n")


def test_a_half_closed_client_gets_every_pipelined_answer(gateway):
    reply = half_closed(gateway, request() + request(STREAM) + request())
    assert reply.count(b"HTTP/1.1 200 ") == 3
    assert b"data: [DONE]\n\n" in reply


def test_a_client_that_half_closes_mid_request_is_closed(gateway):
    """Nothing more can come: the request cannot complete, so there is nothing to answer."""
    assert half_closed(gateway, request()[:-5]) == b""


@pytest.mark.parametrize("field", [b"Authorization: Bearer a", b"Host: y",
                                   b"Content-Type: application/json", b"X-Request-Id: r2",
                                   b"api-key: k2", b"X-Api-Key: k2"])
def test_a_repeated_single_valued_field_is_400(gateway, fleet, field):
    name = field.split(b":")[0]
    first = {b"Host": b"", b"Content-Type": b""}.get(name, b"%s: first\r\n" % name)
    data = request(fields=b"X-Request-Id: dup-1\r\n" * (name != b"X-Request-Id")
                   + first + field + b"\r\n")
    reply = half_closed(gateway, data)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request" and name.lower().decode() in error["message"]
    assert not any("dup-1" in ids for ids in fleet.request_ids().values())


def test_repeated_list_fields_are_still_accepted(gateway):
    fields = (b"Accept: text/plain\r\nAccept: application/json\r\n"
              b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n")
    assert half_closed(gateway, request(fields=fields)).startswith(b"HTTP/1.1 200 ")
