"""Exchanges rendered as audit records (pure: objects in, JSON-ready dicts out; no I/O).

Runs on the event loop when each record happens (see recorder.py for why). Each request gets
two records with the same `id`: `start` (what was asked: written before the request is
forwarded) and `end` (what became of it). Both carry `received`, the arrival time in UTC ISO
8601 with microseconds (`Clock`); the end gives the rest as seconds after it (`sent_after`,
`first_byte_after`, `ttft`, `duration`): one time formatted per request, not four.

Rules: a secret header is never written, whatever the config lists; a body is written as it
came (UTF-8 text, or base64 when it is not UTF-8), unless it is larger than the record limit
or the disk is low, in which case its size and SHA-256 stand in for it.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time

import orjson

from warden.edge.request import INTERPRETED, HttpRequest
from warden.exchange import Exchange
from warden.stream.sse import SseDecoder

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "openai-api-key",
})
REDACTED = "[redacted]"


class Clock:
    """The gateway's monotonic times as UTC ISO 8601 text with microseconds. `sync` sets the
    offset to the wall clock (once per batch); the text up to the second is kept for the
    last second seen, as formatting a datetime costs microseconds and the records of one
    second share it. (Cost rule: this runs once per request. A dict of seconds and an
    f-string with a format spec cost ~0.7 µs here, compiled: more than interpreted.)"""

    def __init__(self) -> None:
        self.offset = 0.0
        self._second = -1
        self._prefix = ""

    def sync(self) -> Clock:
        self.offset = time.time() - time.monotonic()
        return self

    def iso(self, monotonic: float) -> str:
        wall = monotonic + self.offset
        second = int(wall)
        micro = math.floor((wall - second) * 1e6 + 0.5)  # to the nearest, as datetime does
        if micro == 1_000_000:
            second, micro = second + 1, 0
        if second != self._second:
            self._prefix = _second_text(second)
            self._second = second
        return self._prefix + str(1_000_000 + micro)[1:] + "Z"  # (zero-padded, 6 digits)


def _micro(seconds: float) -> float:
    """Seconds to the microsecond, the nearest (half up). Not round(x, 6), which takes the
    slow, correctly rounded decimal path, nor round(): compiled, that is a call into Python,
    where math.floor is a C operation."""
    return math.floor(seconds * 1e6 + 0.5) / 1e6


def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))


def iso_wall(wall: float) -> str:
    """A wall-clock time as the records write it."""
    return Clock().iso(wall)


class Renderer:
    """An exchange's two records, with what the config decides taken once: the header fields
    kept (`headers`: names, any case) and the response capture (`response`: none | summary |
    full). Cost rule: this runs twice per request on the event loop, so each record is one
    dict literal and a few tests, with no calls it can do without."""

    def __init__(self, headers: list[str], response: str, clock: Clock):
        names = dict.fromkeys(name.lower() for name in headers)  # in order, once each
        # A field the server interprets is in `request.fields`; any other in `request.passed`
        # (see edge.request), where `list.index` finds it in C.
        picks = [(name, name.encode("latin-1"), name in SECRET_HEADERS) for name in names]
        self._fielded = tuple(p for p in picks if p[1] in INTERPRETED)
        self._passed = tuple(p for p in picks if p[1] not in INTERPRETED)
        self._response = response
        self._clock = clock

    def start(self, exchange: Exchange, body_limit: int) -> dict:
        """What was asked. `body_limit`: the largest body written verbatim (0: none, the disk
        is low)."""
        request = exchange.request
        record: dict[str, object] = {
            "type": "start", "id": exchange.request_id.decode("latin-1"),
            "received": self.received(exchange), "client": exchange.client_ip,
            "principal": exchange.principal, "endpoint": exchange.endpoint,
            "model": exchange.model,
            "stream": exchange.stream,
        }
        if request is not None:
            record["method"] = request.method
            record["headers"] = self._headers(request)
            body = request.body
            if len(body) > body_limit:
                record.update(body_omitted(body, "low disk" if body_limit == 0 else "too large"))
            else:
                try:
                    record["body"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    record["body"] = base64.b64encode(body).decode()
                    record["body_encoding"] = "base64"
                record["body_bytes"] = len(body)
        if exchange.tenant is not None:
            record["tenant"] = exchange.tenant
        if exchange.guard_notes:
            record["guard"] = exchange.guard_notes
        if exchange.upstream_id:  # the id the backend got, when the client chose its own
            record["upstream_id"] = exchange.upstream_id.decode("latin-1")
        forwarded = exchange.forwarded_body
        if forwarded is not None:  # what went to the backend instead (bounded as the body)
            if len(forwarded) > body_limit:
                record["forwarded_body_omitted"] = "low disk" if body_limit == 0 \
                    else "too large"
                record["forwarded_body_bytes"] = len(forwarded)
            else:
                record["forwarded_body"] = forwarded.decode("utf-8", "replace")
        return record

    def end(self, exchange: Exchange, body_limit: int | None = None) -> dict:
        """What became of it, times in seconds to the microsecond (`_micro`). `body_limit`:
        as `start`'s, for a response kept whole (`response: full`; None: no limit)."""
        received = exchange.received_at
        sent, first_byte, ttft = exchange.sent_at, exchange.first_byte_at, exchange.ttft
        record = {
            "type": "end", "id": exchange.request_id.decode("latin-1"),
            "received": self.received(exchange), "model": exchange.model,
            "backend": exchange.backend, "attempts": exchange.attempts,
            "status": exchange.status, "verdict": exchange.verdict,
            "sent_after": _micro(sent - received) if sent else None,
            "first_byte_after": _micro(first_byte - received) if first_byte else None,
            "ttft": None if ttft is None else _micro(ttft),
            "duration": _micro(exchange.ended_at - received),
            "error": exchange.error,
        }
        if self._response != "none":
            full = self._response == "full"
            if full and body_limit is not None and exchange.captured_bytes > body_limit:
                full = False
                record["response_omitted"] = "low disk" if body_limit == 0 else "too large"
                record["response_bytes"] = exchange.captured_bytes
            _response_fields(exchange, full, record)
        return record

    def received(self, exchange: Exchange) -> str:
        """The request's arrival as text, rendered once for both of its records."""
        text = exchange.received_text
        if text is None:
            text = exchange.received_text = self._clock.iso(exchange.received_at)
        return text

    def _headers(self, request: HttpRequest) -> dict[str, str]:
        kept = {}
        fields = request.fields
        for name, key, secret in self._fielded:
            value = fields.get(key)
            if value is not None:
                kept[name] = REDACTED if secret else value.decode("latin-1")
        if self._passed:
            passed = request.passed
            for name, key, secret in self._passed:
                value = _passed_value(passed, key)
                if value is not None:
                    kept[name] = REDACTED if secret else value.decode("latin-1")
        return kept


def _passed_value(passed: list[bytes], name: bytes) -> bytes | None:
    """The first value of the field `name` in rendered fields (name, ": ", value, CRLF)."""
    if name not in passed:  # usually absent: `in` first, as a failed `index` raises
        return None
    at = passed.index(name)
    if at % 4 == 0:  # a name, not a value that happens to equal it
        return passed[at + 2]
    for i in range(0, len(passed), 4):
        if passed[i] == name:
            return passed[i + 2]
    return None


def body_omitted(body: bytes, reason: str) -> dict:
    return {"body": None, "body_bytes": len(body), "body_omitted": reason,
            "body_sha256": hashlib.sha256(body).hexdigest()}


def _response_fields(exchange: Exchange, full: bool, record: dict) -> None:
    """Usage and finish reasons (a stream's come from its observer; a plain response's from
    its captured body), and with `full` the body, or a stream's text reassembled."""
    captured = exchange.captured
    if exchange.stream:
        record["usage"] = exchange.usage
        record["finish_reasons"] = exchange.finish_reasons
        if full:
            record["text"] = stream_text(b"".join(captured)) if captured is not None else None
        return
    record["usage"] = exchange.read_outcome()  # (parsed once: the others read it too)
    record["finish_reasons"] = exchange.finish_reasons
    if full:
        record["response"] = b"".join(captured).decode("utf-8", "replace") \
            if captured is not None else None
    if exchange.capture_truncated:
        record["response_truncated"] = True


def stream_text(body: bytes) -> str:
    """The text of an OpenAI SSE stream (chat deltas or completion text), reassembled.

    Cost rule: this runs once per recorded stream, on the event loop. A stream in vLLM's
    shape (one-line `data: ` events, no CR, `[DONE]` last) is parsed as one JSON array, in
    one call: parsing each event apart, and `[DONE]` raising, cost 3-4 times as much. Any
    other stream takes the event-by-event path."""
    events = _vllm_shaped(body)
    return text_of(events if events is not None else each_event(body))


def each_event(body: bytes) -> list:
    """A stream's events, decoded one by one (None for a payload that is not JSON)."""
    return [_json(payload) for payload in SseDecoder().feed(body + b"\n\n")]


def text_of(events: list) -> str:
    """The text that a stream's decoded events carry."""
    parts = []
    for event in events:
        choices = event.get("choices") if type(event) is dict else None
        if type(choices) is not list:
            continue
        for choice in choices:
            if type(choice) is not dict:
                continue
            delta = choice.get("delta")
            text = delta.get("content") if type(delta) is dict else choice.get("text")
            if type(text) is str:
                parts.append(text)
    return "".join(parts)


def _vllm_shaped(body: bytes) -> list | None:
    """A stream's events parsed in one go: `data: A\n\ndata: B\n\n...data: [DONE]\n\n` is
    `[A,B,...]` once each `\n\ndata: ` is a comma. None when the stream is not in that shape
    (the newline count says a payload spans lines) or is not JSON that way."""
    if not body.startswith(b"data: ") or not body.endswith(b"\n\n") or 13 in body:
        return None
    end = len(body) - 2
    if body.endswith(b"data: [DONE]\n\n"):
        end -= len(b"\n\ndata: [DONE]")
    payloads = body[6:end]
    separators = payloads.count(b"\n\ndata: ")
    if payloads.count(b"\n") != 2 * separators:  # a newline of a payload's own
        return None
    try:
        events = orjson.loads(b"[" + payloads.replace(b"\n\ndata: ", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    return events if len(events) == separators + 1 else None


def _json(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
