"""What the gateway knows about one request from arrival to end, and who hears of it.

The lowest layer of the request flow: every consumer of a finished request (metrics, the
flight recorder, the incident detector; later limits and caches) reads an `Exchange` and is an
`ExchangeListener`, so none of them imports the proxy, and the proxy imports none of them.
Times are `time.monotonic()`."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

import orjson

from warden.stream.observer import completion_usage
from warden.upstream.sink import NativeSink

loads: Final = orjson.loads  # (compiled: no attribute look-up per call)

if TYPE_CHECKING:
    from warden.edge.request import HttpRequest

_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


# The most response bytes kept for one record (the recorder's `summary` or `full`).
CAPTURE_LIMIT = 4 * 2**20


class Capture:
    """What of a response a relay keeps for its record: nothing, a plain response's body
    (for the summary's usage and finish reasons), or also a stream's events (for its text)."""

    NONE: Final = 0
    BODIES: Final = 1
    STREAMS: Final = 2

    @staticmethod
    def of(response: str) -> int:
        """From the recorder's `response` setting."""
        return {"none": Capture.NONE, "summary": Capture.BODIES,
                "full": Capture.STREAMS}[response]


class RequestIds:
    """Request ids: the client's `X-Request-Id` when it is sane, else `<process prefix>-<n>`
    (unique per process without a syscall per request; the random prefix separates restarts
    and replicas).

    Rule: the id a backend gets is always unique, even when the client chose it. vLLM uses the
    X-Request-Id header as its engine's request id, and two requests in flight with one id
    hung a V0 engine (vllm#10583) and crashed 0.8.x (vllm#15041): a client that sends its id
    twice must not be able to do that through the gateway. So a client's id goes upstream as
    `<its id>.<process prefix>-<n>`: still found by searching the engine's logs for it."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode()
        self._counter = 0

    def pick(self, client_value: bytes | None) -> bytes:
        if client_value is not None and _CLIENT_ID.fullmatch(client_value):
            return client_value
        self._counter += 1
        return b"%s-%x" % (self._prefix, self._counter)

    def upstream(self, client_id: bytes) -> bytes:
        """The id sent upstream for a request whose id the client chose."""
        self._counter += 1
        return b"%s.%s-%x" % (client_id, self._prefix, self._counter)


class Exchange(NativeSink):
    """One request/response through the gateway. Defaults live on the class, so creating one
    stores only what differs (this is allocated per request). (Its base is a response sink's
    so that the relay, an exchange, is called natively by the upstream connection.)"""

    model: str | None = None
    stream = False
    backend: str | None = None       # the backend that got the request (by name)
    attempts: tuple[str, ...] = ()   # every backend tried, in order
    status = 0
    verdict: str | None = None
    ttft: float | None = None
    usage: dict | None = None
    finish_reasons: tuple[str, ...] | list[str] = ()
    error: str | None = None
    ended_at = 0.0
    sent_at = 0.0                    # written to a backend (monotonic; 0: never)
    first_byte_at = 0.0              # the backend's response head arrived
    # For the flight recorder: the request, and the response bytes kept for its record.
    request: HttpRequest | None = None
    guard_notes: list[str] | None = None  # what the guard did (or would have done)
    principal: str | None = None          # the API key's id (auth on), never the key
    grant: object | None = None           # that key (tenancy.keys.ApiKey), for later stages
    limits_ticket: object | None = None   # what the limits reserved (tenancy.answers.Ticket)
    prompt_estimate = 0                   # the prompt's tokens, as the limits estimated them
    events = 0                            # SSE events relayed (a stream's tokens, roughly)
    # Header lines (each ending in CRLF) the client's answer carries besides its own, set by
    # admission stages (rate-limit counts, CORS): on the backend's answer and on the errors
    # the gateway answers in its place.
    response_headers = b""
    tenant: str | None = None             # the key's tenant
    forwarded_body: bytes | None = None   # the body as rewritten by the guard, if it was
    upstream_id = b""                     # the id sent upstream when not `request_id`
    only: frozenset[str] | None = None    # the backends the guard lets it go to (route)
    # Routing: affinity keys (computed only for a policy that wants them), and, if it was
    # sent as a half-open breaker's probe, that round's number (fleet/breaker.py; else 0).
    prefix_key: int | None = None
    session_key: int | None = None
    probe = 0
    # A request let out of the quarantine as its probe: its ticket (guard/probation), which
    # hears how it ended.
    quarantine_probe: object | None = None
    received_text: str | None = None  # received_at as the records write it
    # Tracing (observe/tracing.py), for a sampled request only: its open span, and the W3C
    # `traceparent` sent upstream in place of the client's (empty: the client's goes as is).
    span: object | None = None
    traceparent = b""
    captured: list[bytes] | None = None   # response bytes kept for the record (`keep`)
    captured_bytes = 0
    capture_truncated = False
    outcome_read = False  # a plain response's usage and finish reasons parsed (read_outcome)

    def __init__(self, request_id: bytes, endpoint: str, client_ip: str, received_at: float):
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_ip = client_ip
        self.received_at = received_at

    def keep(self, data: bytes) -> None:
        """Keep response bytes for the record (once `captured` is a list), up to
        `CAPTURE_LIMIT`; past it, `capture_truncated`."""
        captured = self.captured
        assert captured is not None  # (called only once the relay decided to capture)
        if self.captured_bytes + len(data) > CAPTURE_LIMIT:
            self.capture_truncated = True
            return
        self.captured_bytes += len(data)
        captured.append(data)

    def read_outcome(self) -> dict | None:
        """The response's usage, with its finish reasons set beside it: a stream's as its
        observer read them; a plain response's parsed from its kept body (`captured`), once,
        whoever asks first (the recorder, the limits' settlement, the access log, a span).
        Unknown (nothing kept, not JSON): None, and no finish reasons."""
        captured = self.captured
        if self.stream or self.outcome_read or not captured:
            return self.usage
        self.outcome_read = True
        try:
            parsed = loads(b"".join(captured))
        except orjson.JSONDecodeError:
            return self.usage
        if type(parsed) is not dict:
            return self.usage
        usage = parsed.get("usage")
        if type(usage) is dict:
            self.usage = completion_usage(usage) if "input_tokens" in usage else usage
        reasons: list[str] = []
        choices = parsed.get("choices")
        if type(choices) is list:
            for choice in choices:  # (a loop, not a comprehension: no frame per call)
                if type(choice) is dict and isinstance(choice.get("finish_reason"), str):
                    reasons.append(choice["finish_reason"])
        self.finish_reasons = reasons
        return self.usage

    @property
    def duration(self) -> float:
        return self.ended_at - self.received_at


class ExchangeListener(Protocol):
    """One consumer of exchanges (metrics, the flight recorder, the incident detector).

    Contract:
    - `started(exchange)`: the exchange is about to be written to a backend (its `backend` and
      `sent_at` set), before any byte of it is; for one never sent (refused at admission, no
      backend could take it), at its end, just before `ended`. Once per exchange. A listener
      with nothing to do then says so with `hears_started = False` and is not called (a
      call per request saved on the data path).
    - `ended(exchange)`: once per exchange, after its answer (or the error that replaced it)
      went to the client, whatever ended it: `ended_at` and `status` set, `verdict` too for
      one that was sent (None for one refused before).
    - Both run on the event loop, on the data path, for every request: they must not block,
      await or raise, and should cost a few attribute reads in the common case (anything
      slower belongs in a queue the listener drains elsewhere, as the recorder does).
    - Neither may keep the exchange's response bytes (`captured`) past `ended`: they are let
      go right after.
    """

    hears_started: bool

    def started(self, exchange: Exchange) -> None: ...

    def ended(self, exchange: Exchange) -> None: ...


class NativeListener:
    """The base of the gateway's own listeners (all compiled): told through it (`tell_started`,
    `tell_ended`), a listener's method is a C call through its class's table; through the
    `ExchangeListener` protocol it is a Python method call (~200 instructions more a call,
    five or six calls a request). A listener that is not one (a test's) is wrapped in a
    `ListenerAdapter` by `Listeners`. Subclasses set `hears_started` and override what they
    hear."""

    hears_started: bool

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        pass


class ListenerAdapter(NativeListener):
    """A listener that is not a `NativeListener`, behind its face."""

    def __init__(self, listener: ExchangeListener):
        self.listener = listener
        self.hears_started = listener.hears_started

    def started(self, exchange: Exchange) -> None:
        self.listener.started(exchange)

    def ended(self, exchange: Exchange) -> None:
        self.listener.ended(exchange)


def tell_started(listeners: tuple[NativeListener, ...], exchange: Exchange) -> None:
    for listener in listeners:
        listener.started(exchange)


def tell_ended(listeners: tuple[NativeListener, ...], exchange: Exchange) -> None:
    for listener in listeners:
        listener.ended(exchange)


class Listeners:
    """The listeners of a gateway, told in the order given (metrics last: a plain response's
    usage, which the recorder or the limits parse, is on the exchange by then). The forwarder
    walks `starters` and `enders` itself (a call fewer per request); `ended` is for the rest
    (admission's refusals)."""

    def __init__(self, listeners: Sequence[ExchangeListener | NativeListener] = ()):
        self.enders: tuple[NativeListener, ...] = tuple(
            listener if isinstance(listener, NativeListener) else ListenerAdapter(listener)
            for listener in listeners)
        self.starters: tuple[NativeListener, ...] = tuple(
            listener for listener in self.enders if listener.hears_started)

    def ended(self, exchange: Exchange) -> None:
        """The exchange's end; a never-sent one's start goes with it (see the contract)."""
        if not exchange.sent_at:
            tell_started(self.starters, exchange)
        tell_ended(self.enders, exchange)
