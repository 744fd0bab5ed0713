"""The access log: one line per request (logger `warden.access`), for a sampled share of
them; and what both it and the traces read of a finished exchange.

Cost rule (an `ExchangeListener`, on the data path): a request that is not sampled costs an
addition and a comparison. Sampling is even, by counting: with `sample` 0.01 every hundredth
request gets a line (a fraction in millionths is added per request; a line is due each time
the sum passes a million), so a test or an operator knows exactly how many to expect. Only a
sampled request's line is built, on the loop (a dict), and queued: the log output formats
and writes it on its own thread (observe/log_output.py)."""

from __future__ import annotations

import logging

from warden.config.observe_schema import AccessLogSpec
from warden.exchange import Exchange, NativeListener

# Sampling counts in millionths of a request.
WHOLE = 1_000_000


def share(rate: float) -> int:
    """A sample rate in millionths."""
    return round(rate * WHOLE)


class AccessLog(NativeListener):
    """Built only when `logging.access_log.enabled` is on at the start (off, it costs
    nothing); a reload changes its `sample`, or turns it off (sample 0)."""

    def __init__(self, spec: AccessLogSpec,
                 logger: logging.Logger | None = None) -> None:
        self.hears_started = False  # (an ExchangeListener that writes at the end only)
        self.logger = logger if logger is not None else logging.getLogger("warden.access")
        self.step = 0
        self.credit = 0
        self.failures = 0  # lines that could not be made (a bug: counted, never raised)
        self.use(spec)

    def use(self, spec: AccessLogSpec) -> None:
        self.step = share(spec.sample) if spec.enabled else 0

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        self.credit += self.step
        if self.credit < WHOLE:
            return
        self.credit -= WHOLE
        try:
            self.write(exchange)
        except Exception:  # (a listener never raises into the data path)
            self.failures += 1

    def write(self, exchange: Exchange) -> None:
        record = logging.LogRecord(self.logger.name, logging.INFO, "", 0, "request", None,
                                   None)
        record.fields = access_fields(exchange)
        # (handle, not info(): the line goes whatever the loggers' level; the handlers
        # decide.)
        self.logger.handle(record)


def access_fields(exchange: Exchange) -> dict[str, object]:
    """An access line's fields: the stable names the README lists. Times in milliseconds."""
    usage, _ = outcome(exchange)
    ttft = exchange.ttft
    return {
        "event": "access",
        "request_id": exchange.request_id.decode("ascii", "replace"),
        "endpoint": exchange.endpoint,
        "model": exchange.model,
        "stream": exchange.stream,
        "tenant": exchange.tenant,
        "key_id": exchange.principal,
        "client_ip": exchange.client_ip,
        "backend": exchange.backend,
        "attempts": len(exchange.attempts),
        "status": exchange.status,
        "verdict": exchange.verdict,
        "error": exchange.error,
        "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
        "prompt_tokens": _tokens(usage, "prompt_tokens"),
        "completion_tokens": _tokens(usage, "completion_tokens"),
        "duration_ms": round((exchange.ended_at - exchange.received_at) * 1000, 2),
    }


def _tokens(usage: dict | None, name: str) -> int | None:
    value = usage.get(name) if usage is not None else None
    return value if type(value) is int else None


def outcome(exchange: Exchange) -> tuple[dict | None, list[str]]:
    """(usage, finish reasons) of an exchange: a stream's, as its observer read them; a plain
    response's from its kept body (Exchange.read_outcome: parsed once, whoever asks first).
    Unknown: (None, [])."""
    usage = exchange.read_outcome()
    return usage, list(exchange.finish_reasons)
