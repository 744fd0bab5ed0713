"""How the relay passes a backend's response head on: raw with the gateway's lines, observed
when it is an event stream, rewritten when it cannot pass (fakes as in test_relay)."""

from __future__ import annotations

import pytest

from tests.unit.test_relay import JSON, SSE, chunk, deliver, make
from warden.stream.observer import Ending
from warden.upstream.sink import BodyMode


def test_plain_response_is_relayed_raw_with_the_gateway_headers():
    relay, client, _, ends = make()
    assert relay.on_head(200, JSON) == BodyMode.RAW  # the backend's framing passes through
    relay.on_raw(b"{", False)
    relay.on_raw(b"}", True)  # the read that carries the end of the response ends it
    relay.on_complete()       # a duplicate end is ignored
    assert ends == [Ending.UPSTREAM_COMPLETE] and client.ended == 1
    assert relay.observer is None and client.raw
    (head,) = client.head
    assert head.startswith(JSON) and b"x-request-id: r1\r\n" in head
    assert b"x-upstream-status: 200\r\n" in head and client.written == [b"{", b"}"]


def test_event_stream_is_relayed_raw_and_observed():
    relay, client, _, _ = make()
    assert relay.on_head(200, SSE) == BodyMode.RAW_OBSERVED
    deliver(relay, b'data: {"choices":[{"finish_reason":"stop"}]}\n\n')
    deliver(relay, b"data: [DONE]\n\n", last=True)
    assert relay.observer.done and relay.observer.finish_reasons == ["stop"]
    assert client.raw and client.written[0] == chunk(
        b'data: {"choices":[{"finish_reason":"stop"}]}\n\n')


def test_event_stream_to_an_http10_client_is_decoded_and_observed():
    relay, client, _, _ = make(http11=False)
    assert relay.on_head(200, SSE) == BodyMode.DECODED
    deliver(relay, b"data: [DONE]\n\n", last=True)
    assert relay.observer is not None and relay.observer.done
    assert client.head[2] is None  # re-framed by the server (HTTP/1.0: ends with the close)


@pytest.mark.parametrize("head", [
    JSON + b"connection: keep-alive, x-hop\r\nx-hop: 1\r\n",   # hop-by-hop headers
    b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n",  # unframed HTTP/1.0 body
])
def test_odd_heads_are_rewritten_not_passed_through(head):
    relay, client, _, _ = make()
    assert relay.on_head(200, head) == BodyMode.DECODED
    status, block, _ = client.head
    assert status == 200 and b"x-hop" not in block and b"connection" not in block
