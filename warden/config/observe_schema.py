"""The settings of the gateway's own logs, traces and event-loop probe (warden/observe): the
log format and level, the access log, the OpenTelemetry export, how often the loop's lag is
sampled."""

from __future__ import annotations

import importlib.util
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from warden.config.http_schema import checked_headers
from warden.config.spec import Duration, Spec

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class AccessLogSpec(Spec):
    """One line per request (logger `warden.access`), at INFO. `sample`: the share of requests
    that get a line, spread evenly (0.01: every hundredth)."""

    enabled: bool = False
    sample: float = Field(default=1.0, ge=0.0, le=1.0)


class LoggingSpec(Spec):
    format: Literal["text", "json"] = "text"
    # The level when `--log-level` is not given (the flag wins).
    level: str = "INFO"
    # Lines waiting for the writer thread beyond this are dropped, and counted
    # (warden_log_dropped_total): a stderr nobody reads must not stall the gateway.
    queue_size: int = Field(default=10_000, ge=1)
    access_log: AccessLogSpec = AccessLogSpec()

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LEVELS:
            raise ValueError(f"must be one of {', '.join(LEVELS)} (any case)")
        return value.upper()


class TracingSpec(Spec):
    """A span per request, exported with OTLP over HTTP (protobuf) from a thread of its own;
    needs the `otel` extra (`pip install 'warden[otel]'`)."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # The share of requests that get a span, spread evenly (0.01: every hundredth).
    sample: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = Field(default="warden", min_length=1)
    headers: dict[str, str] = {}  # sent with each export (a collector's API key: ${ENV})
    timeout: Duration = Field(default=10.0, gt=0)  # one export gives up after this
    # Spans waiting to be exported beyond this are dropped (a collector down or hanging).
    queue_size: int = Field(default=2048, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not a URL (expected http://host:4318/v1/traces)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return checked_headers(headers)

    @model_validator(mode="after")
    def _installed(self) -> TracingSpec:
        if self.enabled and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError("tracing needs the otel extra: pip install 'warden[otel]'")
        return self


class LoopProbeSpec(Spec):
    """The event loop's lag (warden_event_loop_lag_seconds) is sampled by a timer every
    `interval` while requests are in flight (every 20 ms, or `interval` if longer, when
    none are). A stall longer than `interval` + 1 ms is always seen; a shorter one in
    proportion to its length. Each sample wakes the loop, which costs CPU (~50 µs a wake-up
    on a virtual machine: at 1 ms, ~5% of a core while serving)."""

    interval: Duration = Field(default=0.005, ge=0.001, le=1.0)
