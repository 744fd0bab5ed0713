"""Records as written: secrets never, bodies verbatim (or their digest), responses summed up;
and the recorder's queue bound (drops are counted, never silent)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from warden.config.schema import RecorderSpec
from warden.edge.request import HttpRequest
from warden.proxy.exchange import Exchange
from warden.record.recorder import Recorder
from warden.record.render import end_record, start_record, stream_text

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"


def exchange(body: bytes, fields: dict | None = None, passed: list | None = None) -> Exchange:
    request = HttpRequest(b"POST", b"/v1/chat/completions", fields or {}, passed or [], body,
                          True, "10.0.0.9", 100.0)
    ex = Exchange(b"rid-1", "/v1/chat/completions", "10.0.0.9", 100.0)
    ex.request = request
    ex.model = "m"
    return ex


def test_secret_headers_are_redacted_even_when_asked_for():
    ex = exchange(b"{}", {b"authorization": b"Bearer sk-live-123",
                          b"content-type": b"application/json"},
                  [b"x-api-key", b": ", b"k-456", b"\r\n", b"user-agent", b": ", b"sdk",
                   b"\r\n"])
    record = start_record(ex, 0.0, ("authorization", "x-api-key", "user-agent",
                                    "content-type", "absent"), 1000)
    assert record["headers"] == {"authorization": "[redacted]", "x-api-key": "[redacted]",
                                 "user-agent": "sdk", "content-type": "application/json"}
    assert b"sk-live-123" not in repr(record).encode() and b"k-456" not in repr(record).encode()


def test_bodies_are_verbatim_or_stand_in_by_size_and_digest():
    text = '{"messages": [{"role": "user", "content": "hé 😀"}]}'.encode()
    assert start_record(exchange(text), 0.0, (), 1000)["body"].encode() == text
    binary = b"\xff\xfe\x00not utf-8"
    record = start_record(exchange(binary), 0.0, (), 1000)
    assert record["body_encoding"] == "base64" and base64.b64decode(record["body"]) == binary
    large = start_record(exchange(b"y" * 2000), 0.0, (), 1000)
    assert large["body"] is None and large["body_omitted"] == "too large"
    assert large["body_sha256"] == hashlib.sha256(b"y" * 2000).hexdigest()
    assert start_record(exchange(b"{}"), 0.0, (), 0)["body_omitted"] == "low disk"


def test_times_are_utc_iso_from_the_monotonic_clock():
    ex = exchange(b"{}")
    ex.sent_at, ex.ended_at = 100.25, 101.5
    record = end_record(ex, 1_800_000_000.0 - 100.0, "none")
    assert record["done"] == "2027-01-15T08:00:01.500000Z"
    assert record["sent"] == "2027-01-15T08:00:00.250000Z" and record["duration"] == 1.5


def test_a_plain_response_is_summed_up_from_its_captured_body():
    ex = exchange(b"{}")
    ex.captured = [b'{"choices":[{"finish_reason":"stop"}],',
                   b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}']
    summary = end_record(ex, 0.0, "summary")
    assert summary["finish_reasons"] == ["stop"] and summary["usage"]["total_tokens"] == 5
    assert "response" not in summary
    assert end_record(ex, 0.0, "full")["response"] == b"".join(ex.captured).decode()
    assert "usage" not in end_record(ex, 0.0, "none")


def test_a_stream_is_reassembled_into_its_text():
    sse = (FIXTURES / "sse-chat-0.32.0.txt").read_bytes()
    expected = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                       for line in sse.decode().split("\n")
                       if line.startswith("data: {") and '"choices":[{' in line)
    assert len(expected) > 10 and stream_text(sse) == expected


def test_a_full_queue_drops_and_counts():
    recorder = Recorder(RecorderSpec(queue_size=3))
    for _ in range(5):
        recorder.started(exchange(b"{}"))
    assert recorder.queued == 3 and recorder.dropped == 2
