from __future__ import annotations

from warden.proxy import headers as hdr


def head_of(request: list[bytes]) -> list[bytes]:
    return request[0].split(b"\r\n")


def test_upstream_request_rewrites_what_the_gateway_owns():
    client = [(b"host", b"gateway"), (b"content-type", b"application/json"),
              (b"connection", b"keep-alive, x-secret-hop"), (b"x-secret-hop", b"1"),
              (b"keep-alive", b"300"), (b"te", b"trailers"), (b"x-forwarded-for", b"10.0.0.1"),
              (b"x-request-id", b"client-id"), (b"authorization", b"Bearer user"),
              (b"content-length", b"999"), (b"expect", b"100-continue")]
    request = hdr.upstream_request(b"POST", b"/v1/chat/completions", client, b"{}",
                                   host=b"10.1.1.1:8000", request_id=b"rid-1",
                                   client_ip="192.0.2.7", api_key=None)
    lines = head_of(request)
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"host: 10.1.1.1:8000" in lines
    assert b"x-request-id: rid-1" in lines and b"x-request-id: client-id" not in lines
    assert b"x-forwarded-for: 10.0.0.1, 192.0.2.7" in lines
    assert b"content-length: 2" in lines and b"content-length: 999" not in lines
    assert b"authorization: Bearer user" in lines
    for gone in (b"connection", b"x-secret-hop", b"keep-alive", b"te", b"expect"):
        assert not any(line.startswith(gone + b":") for line in lines), gone
    assert request[1] == b"{}"


def test_backend_api_key_replaces_the_clients():
    request = hdr.upstream_request(b"POST", b"/v1/models", [(b"authorization", b"Bearer u")],
                                   b"", host=b"h:1", request_id=b"r", client_ip="1.2.3.4",
                                   api_key="backend-key")
    lines = head_of(request)
    assert b"authorization: Bearer backend-key" in lines
    assert b"authorization: Bearer u" not in lines


def test_downstream_headers():
    upstream = [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked"),
                (b"date", b"x"), (b"x-request-id", b"theirs"), (b"server", b"uvicorn")]
    out = hdr.downstream_headers(upstream, status=200, request_id=b"ours",
                                 upstream_addr=b"127.0.0.1:18090")
    assert out == [(b"content-type", b"text/event-stream"), (b"server", b"uvicorn"),
                   (b"x-request-id", b"ours"), (b"x-upstream-addr", b"127.0.0.1:18090"),
                   (b"x-upstream-status", b"200")]


def test_framing_and_content_type():
    assert hdr.body_length([(b"content-length", b"12")]) == 12
    assert hdr.body_length([(b"transfer-encoding", b"chunked")]) is None
    assert hdr.is_event_stream([(b"content-type", b"text/event-stream; charset=utf-8")])
    assert not hdr.is_event_stream([(b"content-type", b"application/json")])
