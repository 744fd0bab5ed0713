"""Bad input gets the right status and the OpenAI error envelope; never a traceback."""

from __future__ import annotations

import json
import socket

import pytest

from tests.harness import GatewayThread, http

CHAT = "/v1/chat/completions"
GOOD = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}]})


def _envelope(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "code"), [
    ("POST", CHAT, b"{not json", "application/json", 400, "invalid_request"),
    ("POST", CHAT, b"[1, 2]", "application/json", 400, "invalid_request"),
    ("POST", CHAT, GOOD.encode(), "text/plain", 415, "unsupported_media_type"),
    ("POST", CHAT, b'{"model": 7}', "application/json", 400, "invalid_request"),
    ("POST", CHAT, b'{"model": "nope"}', "application/json", 404, "model_not_found"),
    ("GET", CHAT, None, "application/json", 405, "method_not_allowed"),
    ("POST", "/v1/nothing", GOOD.encode(), "application/json", 404, "not_found"),
    ("POST", "/health", b"", "application/json", 405, "method_not_allowed"),
])
def test_bad_requests(gateway, method, path, body, content_type, status, code):
    got_status, _, got_body = http(method, gateway.url + path, body,
                                   {"Content-Type": content_type})
    assert got_status == status
    assert _envelope(got_body)["code"] == code


def test_oversized_body_is_413(fleet):
    gw = GatewayThread({"backends": fleet.backends_config(), "limits": {"max_body": "1KiB"}})
    try:
        big = json.dumps({"model": "sim-model", "messages": [{"role": "user",
                                                               "content": "x" * 2000}]})
        status, _, body = http("POST", gw.url + CHAT, big.encode(),
                               {"Content-Type": "application/json"})
        assert status == 413
        assert _envelope(body)["code"] == "payload_too_large"
        status, _, _ = http("POST", gw.url + CHAT, GOOD.encode(),
                            {"Content-Type": "application/json"})
        assert status == 200
    finally:
        gw.stop()


def test_malformed_http_is_400_and_closed(gateway):
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400")
    assert _envelope(reply.split(b"\r\n\r\n", 1)[1])["code"] == "invalid_request"


def test_gateway_endpoints(gateway):
    assert http("GET", gateway.url + "/health")[0] == 200
    status, _, body = http("GET", gateway.url + "/ready")
    assert status == 200 and len(json.loads(body)["backends"]) == 3
    assert "version" in json.loads(http("GET", gateway.url + "/version")[2])
    status, _, body = http("GET", gateway.url + "/v1/models")
    assert [m["id"] for m in json.loads(body)["data"]] == ["sim-model"]
    status, _, body = http("GET", gateway.url + "/metrics")
    assert status == 200 and b"warden_backend_in_flight" in body


def test_missing_model_uses_the_only_model(gateway):
    body = json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    status, _, reply = http("POST", gateway.url + CHAT, body.encode(),
                            {"Content-Type": "application/json"})
    assert status == 200 and json.loads(reply)["model"] == "sim-model"


def test_oversized_head_is_431(fleet):
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "limits": {"max_header_bytes": "4KiB"}})
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            try:
                for i in range(200):  # a head that keeps coming, 8 KiB and more
                    sock.sendall(b"x-filler-%d: %s\r\n" % (i, b"a" * 40))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway answered and closed while the head was still coming
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 431")
        assert _envelope(reply.split(b"\r\n\r\n", 1)[1])["code"] == "headers_too_large"
    finally:
        gw.stop()
