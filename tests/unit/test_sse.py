from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from warden.stream.observer import Ending, StreamObserver, Verdict, stream_verdict
from warden.stream.sse import MAX_EVENT, SseDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"
CHAT = (FIXTURES / "sse-chat-0.32.0.txt").read_bytes()


def decode_all(data: bytes, cuts: list[int]) -> list[bytes]:
    decoder = SseDecoder()
    out, start = [], 0
    for cut in [*cuts, len(data)]:
        out += decoder.feed(data[start:cut])
        start = cut
    assert decoder.pending == 0
    return out


def test_any_split_gives_the_same_events():
    whole = decode_all(CHAT, [])
    assert len(whole) == 19 and whole[-1] == b"[DONE]"
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(CHAT)), rng.randint(1, 40)))
        assert decode_all(CHAT, cuts) == whole
    assert decode_all(CHAT, list(range(1, len(CHAT)))) == whole  # byte by byte


def test_crlf_multiline_and_non_data_fields():
    stream = (b": keep-alive comment\r\n\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n"
              b"id: 3\nretry: 10\n\ndata:nospace\n\n")
    assert SseDecoder().feed(stream) == [b"a\nb", b"nospace"]


def test_a_crlf_split_between_reads_is_one_line_end_at_every_cut():
    stream = (b'data: {"choices":[],\r\ndata: "usage":{"total_tokens":5}}\r\n\r\n'
              b"data: [DONE]\r\n\r\n")
    whole = [b'{"choices":[],\n"usage":{"total_tokens":5}}', b"[DONE]"]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            assert decode_all(stream, [first, second]) == whole


def test_an_event_over_the_limit_is_skipped_to_its_end_in_linear_time():
    """Held as pieces, scanned once each: 32 MiB in 16 KiB reads, or the limit in 1 KB ones,
    took minutes when each read copied and scanned everything held."""
    for read, size in [(16384, 2 * MAX_EVENT), (997, MAX_EVENT + (200 << 10))]:
        stream = b"data: " + b"x" * size + b"\n\ndata: after\n\n"
        decoder = SseDecoder()
        payloads = []
        for start in range(0, len(stream), read):
            payloads += decoder.feed(stream[start:start + read])
            assert decoder.held.size <= MAX_EVENT + read
        assert payloads == [b"after"] and decoder.skipped == 1 and decoder.pending == 0
    near = b"data: " + b"y" * (MAX_EVENT - 100) + b"\n\n"  # under the limit: read
    assert decode_all(near, list(range(65536, len(near), 65536))) == [near[6:-2]]


def test_a_plain_event_after_an_oversize_one_begins_is_not_taken_for_its_end():
    """While an event over the limit is skipped, a chunk that looks like a whole plain event
    is part of it (its lines), not one to count: the observer's shortcut waits too."""
    observer = StreamObserver(lambda: 1.0)
    observer.feed(b"data: " + b"x" * (MAX_EVENT + 10) + b"\n")
    observer.feed(b'data: {"choices":[{"finish_reason":null}]}\n\n')   # its end
    observer.feed(b'data: {"choices":[{"finish_reason":"stop"}]}\n\n')
    assert observer.finish_reasons == ["stop"] and observer.pending == 0


def test_incomplete_tail_is_held():
    decoder = SseDecoder()
    assert decoder.feed(b"data: {\"a\"") == []
    assert decoder.pending == 10
    assert decoder.feed(b":1}\n\n") == [b'{"a":1}']


def test_observer_reads_a_real_vllm_stream():
    offset = 0
    observer = StreamObserver(lambda: float(offset))
    for offset in range(0, len(CHAT), 100):
        observer.feed(CHAT[offset:offset + 100])
    assert observer.done and observer.events == 19
    assert observer.usage == {"prompt_tokens": 16, "total_tokens": 32, "completion_tokens": 16}
    assert observer.finish_reasons == ["length"]
    assert observer.first_event_at == 200.0  # the chunk that completed the first event
    assert observer.verdict(Ending.UPSTREAM_COMPLETE) == Verdict.COMPLETE


@pytest.mark.parametrize(("capture", "usage"), [
    ("sse-chat-0.32.0.txt", 32), ("sse-completions-0.32.0.txt", 10)])
def test_observer_decodes_only_the_chunks_that_end_something(capture, usage, monkeypatch):
    decoded: list[bytes] = []
    loads = orjson.loads

    def counting_loads(payload):  # (orjson is the seam: the observer may be compiled)
        decoded.append(payload)
        return loads(payload)

    observer = StreamObserver(lambda: 0.0)
    monkeypatch.setattr(orjson, "loads", counting_loads)
    observer.feed((FIXTURES / capture).read_bytes())
    monkeypatch.undo()
    assert observer.finish_reasons == ["length"] and observer.usage["total_tokens"] == usage
    assert len(decoded) == 2 and observer.events > 4  # the finishing chunk and the usage


def observed(chunks: list[bytes]) -> tuple:
    observer = StreamObserver(lambda: 1.0)
    for chunk in chunks:
        observer.feed(chunk)
    return (observer.events, observer.done, observer.usage, observer.finish_reasons,
            observer.pending)


def test_one_event_per_chunk_is_observed_as_the_whole_stream():
    """vLLM's usual framing (one event per chunk) takes the observer's shortcut; the result
    must be the decoder's."""
    events = [e + b"\n\n" for e in CHAT.split(b"\n\n") if e]
    assert observed(events) == observed([CHAT]) == (19, True, {
        "prompt_tokens": 16, "total_tokens": 32, "completion_tokens": 16}, ["length"], 0)


def test_any_framing_of_a_stream_is_observed_as_the_whole_stream():
    """Cut anywhere (the shortcut taken for the chunks that are one plain event, the decoder
    for the rest), a stream, CRs and all, is observed as when fed at once."""
    odd = (b'data: {"choices":[{"finish_reason":null}]}\r\rdata: {"choices":[{"finish_reason":'
           b'null}]}\r\n\r\ndata: {"choices":[{"finish_reason":"stop"}]}\n\n')
    rng = random.Random(11)
    for stream in (CHAT, odd + CHAT):
        events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]
        whole = observed([stream])
        for _ in range(300):
            cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 30)))
            chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)],
                                                    strict=True)]
            assert observed(chunks) == whole
            merged = rng.randint(1, len(events))  # whole events, some run together
            assert observed([b"".join(events[:merged]), *events[merged:]]) == whole


@pytest.mark.parametrize("odd", [
    # a CR ends lines (and CR CR an event): two events, the second one finishing
    b'data: {"choices":[{"finish_reason":null}]}\r\rdata: {"choices":[{"finish_reason":'
    b'"stop"}]}\n\n',
    # two events in one chunk, the second one finishing
    b'data: {"choices":[{"finish_reason":null}]}\n\ndata: {"choices":[{"finish_reason":'
    b'"stop"}]}\n\n',
])
def test_chunks_that_are_not_one_plain_event_are_decoded(odd):
    assert observed([odd]) == (2, False, None, ["stop"], 0)


def test_a_chunk_completing_a_held_event_is_decoded():
    first = b'data: {"choices":[{"finish_reason":"st'
    assert observed([first, b'op"}]}\n\n']) == (1, False, None, ["stop"], 0)


@pytest.mark.parametrize("choices", [b"5", b'"x"', b"{}", b"[5]", b"null"])
def test_odd_choices_are_ignored_not_raised(choices):
    """A backend's odd event must not break the stream it is in (the observer runs inside
    the upstream connection's parser callbacks)."""
    observer = StreamObserver(lambda: 1.0)
    observer.feed(b'data: {"choices": %b, "usage": {"total_tokens": 3}}\n\n' % choices)
    assert observer.usage == {"total_tokens": 3} and observer.finish_reasons == []


def test_observer_sees_vllm_error_events():
    observer = StreamObserver(lambda: 1.0)
    observer.feed(b'data: {"error": {"message": "EngineCore encountered an issue", '
                  b'"type": "InternalServerError", "param": null, "code": 500}}\n\n'
                  b"data: [DONE]\n\n")
    assert observer.error["code"] == 500
    assert observer.verdict(Ending.UPSTREAM_COMPLETE) == Verdict.UPSTREAM_ERROR


RESPONSES_END = (b'event: response.completed\ndata: {"type":"response.completed","response":'
                 b'{"id":"resp_1","status":"completed","usage":{"input_tokens":7,'
                 b'"output_tokens":3,"total_tokens":10}},"sequence_number":9}\n\n')


def test_a_responses_stream_ends_with_its_usage_in_the_gateways_names():
    """No [DONE] and no top-level usage: the last event's `response` says both (budgets,
    metrics and logs read `prompt_tokens` and `completion_tokens`)."""
    observer = StreamObserver(lambda: 1.0)
    observer.feed(b'event: response.output_text.delta\ndata: {"type":"response.output_text'
                  b'.delta","delta":"hi","sequence_number":4}\n\n' + RESPONSES_END)
    assert observer.usage == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
                              "prompt_tokens": 7, "completion_tokens": 3}
    assert observer.verdict(Ending.UPSTREAM_COMPLETE) == Verdict.COMPLETE
    failed = StreamObserver(lambda: 1.0)
    failed.feed(b'data: {"type":"response.failed","response":{"status":"failed","error":'
                b'{"code":"server_error","message":"engine dead"}}}\n\n')
    assert failed.verdict(Ending.UPSTREAM_COMPLETE) == Verdict.UPSTREAM_ERROR


@pytest.mark.parametrize(("ending", "done", "error", "verdict"), [
    (Ending.UPSTREAM_COMPLETE, True, False, Verdict.COMPLETE),
    (Ending.UPSTREAM_COMPLETE, False, False, Verdict.UPSTREAM_EOF),
    (Ending.UPSTREAM_LOST, False, False, Verdict.UPSTREAM_EOF),
    (Ending.UPSTREAM_LOST, False, True, Verdict.UPSTREAM_ERROR),
    (Ending.CLIENT_LOST, False, True, Verdict.CLIENT_ABORT),
    (Ending.CLIENT_LOST, True, False, Verdict.COMPLETE),  # left after [DONE]
    (Ending.CLIENT_LOST, True, True, Verdict.UPSTREAM_ERROR),
    (Ending.TIMED_OUT, False, False, Verdict.TIMEOUT),
    (Ending.CANCELLED, True, False, Verdict.CANCELLED),
])
def test_verdict_table(ending, done, error, verdict):
    assert stream_verdict(ending, done=done, error=error) is verdict
