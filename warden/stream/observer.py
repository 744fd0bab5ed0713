"""Watches an OpenAI/vLLM SSE stream on the side, without copying it, and gives its verdict.

Cost rule: a payload is JSON-decoded only when it may carry something the gateway keeps
(usage, a finish reason, an error), and that is decided with one byte search: vLLM sends one
choice per chunk, and every chunk that is still generating says `"finish_reason":null`; the
finishing chunk, the usage chunk and error events do not. (With `continuous_usage_stats`, the
running usage in content chunks is skipped; the final usage chunk carries the total.) A
search for bytes is `find`, never `in`: on CPython 3.11 `needle in payload` first tries the
needle as an integer and formats (then discards) a TypeError, several times the cost of a
find. A search for one byte is `in` with the byte as an int (`13 in chunk`): a memchr, with
no argument parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import orjson

from warden.stream.sse import SseDecoder


class Verdict:
    """How a stream ended, as recorded and exported. Plain string constants, not an Enum:
    Enum member access costs ~100 ns on CPython 3.11, and this is read per request."""

    COMPLETE: Final = "complete"
    CLIENT_ABORT: Final = "client_abort"
    UPSTREAM_ERROR: Final = "upstream_error"
    UPSTREAM_EOF: Final = "upstream_eof"
    TIMEOUT: Final = "timeout"
    # The gateway itself abandoned the exchange (its task was cancelled, e.g. shutdown).
    CANCELLED: Final = "cancelled"


class Ending:
    """How the exchange stopped, as the relay saw it (string constants, as `Verdict`)."""

    UPSTREAM_COMPLETE: Final = "upstream_complete"
    UPSTREAM_LOST: Final = "upstream_lost"
    CLIENT_LOST: Final = "client_lost"
    TIMED_OUT: Final = "timed_out"
    CANCELLED: Final = "cancelled"


class StreamObserver:
    """`clock` is read once, when the first event completes (time to first token)."""

    __slots__ = ("_clock", "_decoder", "done", "error", "events", "finish_reasons",
                 "first_event_at", "usage")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._decoder = SseDecoder()
        self.events = 0
        self.first_event_at: float | None = None
        self.done = False
        self.usage: dict | None = None
        self.finish_reasons: list[str] = []
        self.error: dict | None = None

    def feed(self, chunk: bytes) -> None:
        # The common chunk, decided without the decoder: the chunk is one whole one-line
        # `data:` event of a choice still generating (vLLM sends one event per chunk), and
        # nothing is pending. It only counts; a CR anywhere could end lines or events, so it
        # disqualifies. (It ends in two newlines (10) and holds no other. Cost rule: a byte
        # looked for as an int, `13 in chunk`, is a memchr; `bytes.find` parses its
        # arguments, ~700 instructions a call on CPython 3.11, so only the pattern is found.)
        if (len(chunk) > 7 and chunk[-1] == 10 and chunk[-2] == 10
                and chunk.startswith(b"data:") and 13 not in chunk and 10 not in chunk[:-2]
                and chunk.find(b'"finish_reason":null') > 0 and not self._decoder.held.start
                and not self._decoder.skipping):
            self.events += 1
            if self.first_event_at is None:
                self.first_event_at = self._clock()
            return
        for payload in self._decoder.feed(chunk):
            self.events += 1
            if self.first_event_at is None:
                self.first_event_at = self._clock()
            if payload == b"[DONE]":
                self.done = True
            elif payload.find(b'"finish_reason":null') < 0:
                self._inspect(payload)

    def _inspect(self, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        if isinstance(event.get("error"), dict):
            self.error = event["error"]
        elif event.get("object") == "error":  # older vLLM error events
            self.error = event
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        else:  # the Responses API's: in its last event's `response` (response.completed, ...)
            response = event.get("response")
            if isinstance(response, dict):
                self._responses_event(event.get("type"), response)
        choices = event.get("choices")
        if type(choices) is not list:  # (a backend's odd event must not break the relay)
            return
        for choice in choices:
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                self.finish_reasons.append(reason)

    def _responses_event(self, kind: object, response: dict) -> None:
        """The Responses API's stream has no [DONE]: its last event says how it ended."""
        if isinstance(response.get("usage"), dict):
            self.usage = completion_usage(response["usage"])
        if kind == "response.completed" or kind == "response.incomplete":
            self.done = True
        elif kind == "response.failed":
            error = response.get("error")
            self.error = error if isinstance(error, dict) else {"message": "response.failed"}

    @property
    def pending(self) -> int:
        """Bytes of an event that has started but not ended (0: at an event boundary)."""
        return self._decoder.pending

    def verdict(self, ending: str) -> str:
        return stream_verdict(ending, done=self.done, error=self.error is not None)


def stream_verdict(ending: str, *, done: bool, error: bool) -> str:
    """Pure: an error the upstream reported outranks how the connection ended, except that a
    client that left or a timeout are named as such.

    A client that leaves after `[DONE]` had the whole stream: the openai SDK stops reading
    there and may close before the chunked terminator that follows it arrives."""
    if ending == Ending.UPSTREAM_COMPLETE or (ending == Ending.CLIENT_LOST and done):
        if error:
            return Verdict.UPSTREAM_ERROR
        return Verdict.COMPLETE if done else Verdict.UPSTREAM_EOF
    if ending == Ending.CLIENT_LOST:
        return Verdict.CLIENT_ABORT
    if ending == Ending.TIMED_OUT:
        return Verdict.TIMEOUT
    if ending == Ending.CANCELLED:
        return Verdict.CANCELLED
    return Verdict.UPSTREAM_ERROR if error else Verdict.UPSTREAM_EOF


def completion_usage(usage: dict) -> dict:
    """A Responses API usage (`input_tokens`, `output_tokens`) with the names the gateway reads
    (`prompt_tokens`, `completion_tokens`) beside its own; any other usage as it is."""
    if "prompt_tokens" in usage or "input_tokens" not in usage:
        return usage
    return {**usage, "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage.get("output_tokens")}
