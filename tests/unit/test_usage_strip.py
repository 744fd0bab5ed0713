"""The usage event is taken out of a stream whose client did not ask for it; every other
byte passes as it came, however the stream is cut into chunks."""

from __future__ import annotations

import pytest

from warden.stream.sse import MAX_EVENT
from warden.stream.usage_strip import UsageStripper

CONTENT = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"},'
           b'"finish_reason":null}]}\n\n')
FINISH = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
USAGE = (b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"total_tokens":7,'
         b'"completion_tokens":2}}\n\n')
DONE = b"data: [DONE]\n\n"
STREAM = CONTENT + CONTENT + FINISH + USAGE + DONE


def through(chunks: list[bytes]) -> tuple[bytes, UsageStripper]:
    stripper = UsageStripper()
    out = b"".join(stripper.feed(chunk) for chunk in chunks) + stripper.rest()
    return out, stripper


@pytest.mark.parametrize("size", [1, 3, 7, 50, len(STREAM)])
def test_the_usage_event_goes_and_nothing_else_however_it_is_cut(size):
    out, stripper = through([STREAM[i:i + size] for i in range(0, len(STREAM), size)])
    assert out == CONTENT + CONTENT + FINISH + DONE and stripper.stripped == 1


def test_events_as_vllm_sends_them_pass_at_once():
    stripper = UsageStripper()
    assert [stripper.feed(e) for e in (CONTENT, FINISH, USAGE, DONE)] == \
        [CONTENT, FINISH, b"", DONE]


def test_usage_in_a_content_event_is_kept():
    """With continuous_usage_stats every event carries usage: only the usage-only one goes."""
    running = CONTENT.replace(b"}]}", b'}],"usage":{"completion_tokens":1}}')
    out, stripper = through([running, USAGE, DONE])
    assert out == running + DONE and stripper.stripped == 1


def test_a_stream_with_crs_passes_untouched_from_there():
    crlf = USAGE.replace(b"\n\n", b"\r\n\r\n")
    out, stripper = through([CONTENT[:10], CONTENT[10:] + crlf, DONE])
    assert out == CONTENT + crlf + DONE and stripper.stripped == 0


def test_an_unended_event_is_given_back_at_the_end():
    out, _ = through([CONTENT, b'data: {"cut'])
    assert out == CONTENT + b'data: {"cut'


def test_an_event_over_the_limit_passes_everything_from_there():
    """Not held whole (memory) nor scanned again per read (time): from there the stream
    passes as it came, the usage event included, as after a CR."""
    big = b"data: " + b"x" * (MAX_EVENT + 100_000) + b"\n\n"  # (held past it, read by read)
    for read in (997, 65536):
        stream = CONTENT + big + USAGE + DONE
        out, stripper = through([stream[i:i + read] for i in range(0, len(stream), read)])
        assert out == stream and stripper.passing and stripper.stripped == 0
