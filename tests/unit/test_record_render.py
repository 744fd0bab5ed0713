"""Records as written: secrets never, bodies verbatim (or their digest), responses summed up;
and the recorder's queue bound (drops are counted, never silent)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from warden.config.schema import RecorderSpec
from warden.edge.request import HttpRequest
from warden.exchange import Exchange
from warden.record.recorder import Recorder
from warden.record.render import (
    Clock,
    Renderer,
    _vllm_shaped,
    each_event,
    stream_text,
    text_of,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"


def clock(offset: float = 0.0) -> Clock:
    fixed = Clock()
    fixed.offset = offset
    return fixed


def start_record(ex: Exchange, times: Clock, headers: list[str], body_limit: int) -> dict:
    return Renderer(headers, "none", times).start(ex, body_limit)


def end_record(ex: Exchange, times: Clock, response: str) -> dict:
    return Renderer([], response, times).end(ex)


def exchange(body: bytes, fields: dict | None = None, passed: list | None = None) -> Exchange:
    request = HttpRequest(b"POST", b"/v1/chat/completions", fields or {}, passed or [], body,
                          True, "10.0.0.9", 100.0)
    ex = Exchange(b"rid-1", "/v1/chat/completions", "10.0.0.9", 100.0)
    ex.request = request
    ex.model = "m"
    return ex


def test_secret_headers_are_redacted_even_when_asked_for():
    ex = exchange(b"{}", {b"authorization": b"Bearer sk-live-123", b"x-api-key": b"k-456",
                          b"content-type": b"application/json"},
                  [b"openai-api-key", b": ", b"k-789", b"\r\n", b"user-agent", b": ", b"sdk",
                   b"\r\n"])
    picks = ["Authorization", "x-api-key", "openai-api-key", "user-agent", "content-type",
             "absent"]
    record = start_record(ex, clock(), picks, 1000)
    assert record["headers"] == {"authorization": "[redacted]", "x-api-key": "[redacted]",
                                 "openai-api-key": "[redacted]", "user-agent": "sdk",
                                 "content-type": "application/json"}
    for secret in (b"sk-live-123", b"k-456", b"k-789"):
        assert secret not in repr(record).encode()


def test_a_kept_header_is_found_by_its_name_not_by_a_value_equal_to_it():
    ex = exchange(b"{}", {}, [b"x-note", b": ", b"user-agent", b"\r\n",
                             b"user-agent", b": ", b"sdk", b"\r\n"])
    assert start_record(ex, clock(), ["user-agent"], 1000)["headers"] == {"user-agent": "sdk"}
    assert start_record(exchange(b"{}"), clock(), ["user-agent"], 1000)["headers"] == {}


def test_the_id_the_backend_got_is_recorded_when_it_is_not_the_requests_own():
    ex = exchange(b"{}")
    assert "upstream_id" not in start_record(ex, clock(), [], 1000)
    ex.upstream_id = b"rid-1.0a1b2c3d4e5f-7"
    assert start_record(ex, clock(), [], 1000)["upstream_id"] == "rid-1.0a1b2c3d4e5f-7"


def test_bodies_are_verbatim_or_stand_in_by_size_and_digest():
    text = '{"messages": [{"role": "user", "content": "hé 😀"}]}'.encode()
    assert start_record(exchange(text), clock(), [], 1000)["body"].encode() == text
    binary = b"\xff\xfe\x00not utf-8"
    record = start_record(exchange(binary), clock(), [], 1000)
    assert record["body_encoding"] == "base64" and base64.b64decode(record["body"]) == binary
    large = start_record(exchange(b"y" * 2000), clock(), [], 1000)
    assert large["body"] is None and large["body_omitted"] == "too large"
    assert large["body_sha256"] == hashlib.sha256(b"y" * 2000).hexdigest()
    assert start_record(exchange(b"{}"), clock(), [], 0)["body_omitted"] == "low disk"


def test_low_disk_leaves_out_every_body_the_forwarded_one_and_a_full_response_too():
    ex = exchange(b'{"prompt":"x"}')
    ex.forwarded_body = b'{"prompt":"x","priority":1}'
    ex.captured = []
    ex.keep(b'{"choices":[{"finish_reason":"stop"}]}')   # (as the relay keeps it)
    low = start_record(ex, clock(), [], 0)
    assert "forwarded_body" not in low and low["forwarded_body_omitted"] == "low disk"
    assert low["forwarded_body_bytes"] == len(ex.forwarded_body)
    assert start_record(ex, clock(), [], 1000)["forwarded_body"] == ex.forwarded_body.decode()
    full = Renderer([], "full", clock())
    lean = full.end(ex, 0)
    assert "response" not in lean and lean["response_omitted"] == "low disk"
    assert lean["finish_reasons"] == ["stop"]   # (the summary is metadata: kept)
    assert full.end(ex, 1000)["response"] == ex.captured[0].decode()


def test_times_are_the_arrival_in_utc_iso_and_seconds_after_it():
    ex = exchange(b"{}")
    ex.sent_at, ex.first_byte_at, ex.ended_at = 100.25, 100.75, 101.5
    record = end_record(ex, clock(1_800_000_000.0 - 100.0), "none")
    assert record["received"] == "2027-01-15T08:00:00.000000Z"
    assert (record["sent_after"], record["first_byte_after"], record["duration"]) == \
        (0.25, 0.75, 1.5)
    assert start_record(ex, clock(), [], 10)["received"] == record["received"]  # once


def test_a_plain_response_is_summed_up_from_its_captured_body():
    ex = exchange(b"{}")
    ex.captured = [b'{"choices":[{"finish_reason":"stop"}],',
                   b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}']
    summary = end_record(ex, clock(), "summary")
    assert summary["finish_reasons"] == ["stop"] and summary["usage"]["total_tokens"] == 5
    assert "response" not in summary
    assert end_record(ex, clock(), "full")["response"] == b"".join(ex.captured).decode()
    assert "usage" not in end_record(ex, clock(), "none")


def test_a_stream_is_reassembled_into_its_text():
    sse = (FIXTURES / "sse-chat-0.32.0.txt").read_bytes()
    expected = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                       for line in sse.decode().split("\n")
                       if line.startswith("data: {") and '"choices":[{' in line)
    assert len(expected) > 10 and stream_text(sse) == expected


def _event_by_event(body: bytes) -> str:
    """The reference: every event decoded apart (the path a stream in another shape takes)."""
    return text_of(each_event(body))


CHAT_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'


@pytest.mark.parametrize("name", ["sse-chat-0.32.0.txt", "sse-completions-0.32.0.txt"])
def test_vllm_streams_are_parsed_in_one_go_to_the_same_text(name):
    sse = (FIXTURES / name).read_bytes()
    assert _vllm_shaped(sse) is not None  # the fast path takes vLLM's own streams
    assert len(stream_text(sse)) > 10 and stream_text(sse) == _event_by_event(sse)


@pytest.mark.parametrize("body", [
    CHAT_EVENT % b"a" + CHAT_EVENT % b"b",                        # no [DONE]
    CHAT_EVENT % b"a" + CHAT_EVENT % b"b"[:-30],                  # cut mid-event
    CHAT_EVENT % b"a" + b"data: 12345",                             # cut, still JSON
    CHAT_EVENT % b"a" + b'data: {"error": {"message": "x"}}\n\ndata: [DONE]\n\n',
    CHAT_EVENT % b"a" + b"data: not json\n\n" + CHAT_EVENT % b"b",
    CHAT_EVENT % b"a" + b"data: [1,\ndata: 2]\n\n" + CHAT_EVENT % b"b",  # a two-line event
    (CHAT_EVENT % b"a").replace(b"\n", b"\r\n") + CHAT_EVENT % b"b",
    b": a comment\n\n" + CHAT_EVENT % b"a",
    b'data: {"choices": 5}\n\ndata: {"choices": [5, {"text": "t"}]}\n\n',
    CHAT_EVENT % b"a\\nb" + b"data: [DONE]\n\n",                 # an escaped newline
    b"data: [DONE]\n\n",
    b"",
])
def test_any_other_shape_gives_the_text_of_its_events(body):
    assert stream_text(body) == _event_by_event(body)


def test_a_full_queue_drops_and_counts():
    recorder = Recorder(RecorderSpec(queue_size=3))
    for _ in range(5):
        recorder.started(exchange(b"{}"))
    assert recorder.queued == 3 and recorder.dropped == 2


def test_a_queue_full_of_bytes_drops_and_counts():
    """Records carry bodies: their bytes bound the queue too, whatever their count."""
    recorder = Recorder(RecorderSpec(queue_bytes="64KiB"))
    body = b'{"prompt": "%s"}' % (b"x" * 20_000)
    for _ in range(5):
        recorder.started(exchange(body))
    assert recorder.queued == 4 and recorder.dropped == 1
    assert 64 * 1024 <= recorder.queued_bytes < 64 * 1024 + 21_000


def test_the_writers_backlog_of_bytes_counts_against_the_queue():
    recorder = Recorder(RecorderSpec(queue_bytes="64KiB"))  # its writer is not started: hung
    body = b'{"prompt": "%s"}' % (b"x" * 20_000)
    recorder.started(exchange(body))
    recorder.started(exchange(body))
    recorder.flush()  # two records with the writer, ~40 KB
    for _ in range(3):
        recorder.started(exchange(body))
    assert recorder.queued == 4 and recorder.dropped == 1


def test_the_cached_iso_text_is_the_datetime_text():
    from datetime import UTC, datetime

    times = clock()
    for wall in (1_800_000_000.0, 1_800_000_000.999999, 1_800_000_001.5, 1_799_999_999.25,
                 1_800_086_400.000001, 1_800_000_001.9999997, 1_800_000_001.25):
        expected = datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds")
        assert times.iso(wall) == expected.replace("+00:00", "Z")
