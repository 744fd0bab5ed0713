"""The settings schema. Every field has a default except `backends`; unknown keys are errors,
so a typo never silently falls back to a default."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from warden.config.auth_schema import AuthSpec
from warden.config.guard_schema import (  # noqa: F401 - re-exported with the rest
    CustomRuleSpec,
    GuardLimitsSpec,
    GuardSpec,
    MediaFetchSpec,
    ModelFacts,
    QuarantineSpec,
    ValidationSpec,
)
from warden.config.http_schema import CorsSpec, checked_headers
from warden.config.limits_schema import RateLimitSpec
from warden.config.observe_schema import (  # noqa: F401
    AccessLogSpec,
    LoggingSpec,
    LoopProbeSpec,
    TracingSpec,
)
from warden.config.recorder_schema import (  # noqa: F401 - re-exported with the rest
    PostgresSinkSpec,
    RecorderSpec,
)
from warden.config.routing_schema import (  # noqa: F401 - re-exported with the rest
    ActiveHealthSpec,
    BreakerSpec,
    HealthSpec,
    OverloadSpec,
    PassiveHealthSpec,
    RoutingSpec,
    ScorerWeights,
    ScrapeSpec,
    SessionSpec,
)
from warden.config.spec import Duration, HostPort, Size, Spec
from warden.config.tls_schema import TlsSpec


class DeploymentSpec(Spec):
    """What a backend is beyond its vLLM version, as its operator declares it: a declared
    fact wins over what the gateway learns from the backend's /metrics (fleet/deployment).
    Unset is unknown, and guard rules that depend on a fact act only where it is known."""

    # Speculative decoding on or off; its method (vLLM's `method`: ngram, eagle, eagle3, mtp,
    # draft_model, extract_hidden_states, ...) when known. A method implies it is on.
    speculative_decoding: bool | None = None
    speculative_method: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    device: Literal["cpu", "gpu", "other"] | None = None
    # vLLM's --tokenizer-mode (auto, slow, mistral, custom, ...).
    tokenizer_mode: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    lora: bool | None = None  # started with --enable-lora
    # vLLM's --tool-call-parser (hermes, qwen3_coder, ...): never published, declared only.
    tool_call_parser: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @field_validator("speculative_method", "tokenizer_mode", "tool_call_parser")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None  # vLLM's names are lower case

    @model_validator(mode="after")
    def _method_means_on(self) -> DeploymentSpec:
        if self.speculative_method is not None and self.speculative_decoding is False:
            raise ValueError("speculative_method is set but speculative_decoding is false")
        return self


class BackendSpec(Spec):
    name: str = Field(min_length=1)
    url: str
    # When absent, the models are learned from the backend's /v1/models.
    models: list[str] | None = None
    # Sent as `Authorization: Bearer ...` to this backend (vLLM --api-key); use ${ENV}.
    api_key: str | None = None
    max_connections: int = Field(default=1024, ge=1)
    # Its vLLM version, when known in advance; else learned from its /version.
    vllm_version: str | None = None
    # Guard rules this backend is known to be safe for (their `route` action may send it
    # such requests), and whether it is the canary that takes quarantined requests.
    safe_for: list[str] = []
    canary: bool = False
    # What it is beyond its version (speculative decoding, device, tokenizer mode, LoRA).
    deployment: DeploymentSpec = DeploymentSpec()
    # The `weighted` policy's static weight (nginx's `weight=`).
    weight: int = Field(default=100, ge=1)
    # At most this many requests in flight to it from this gateway (none: no cap).
    max_in_flight: int | None = Field(default=None, ge=1)
    # An https:// backend: verified against this CA bundle (PEM; none: the system's trust
    # store), or not at all (tls_verify: false, for a lab engine with a self-signed cert).
    tls_ca: Path | None = None
    tls_verify: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not a URL (expected http://host:port)")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("must be a base URL without a path (http://host:port)")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("not a URL (bad port)") from None
        return value.rstrip("/")

    @field_validator("tls_ca")
    @classmethod
    def _ca_loads(cls, value: Path | None) -> Path | None:
        """The bundle must load now: at a reload, a missing one would fail the new config
        halfway through being built (backends already changed), not at its load."""
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"cannot load the CA bundle {value}: {e}") from None
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (443 if self.tls else 80)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TimeoutsSpec(Spec):
    # (0 would fail every request at once, so these must be positive.)
    connect: Duration = Field(default=5.0, gt=0)
    # From the request being sent to the first response byte (prefill can be long).
    first_byte: Duration = Field(default=600.0, gt=0)
    # Longest silence between two response chunks.
    idle: Duration = Field(default=600.0, gt=0)
    # How long a request may wait for a free upstream connection.
    pool: Duration = Field(default=5.0, gt=0)
    # Idle keep-alive upstream connections are closed after this (uvicorn closes at 5 s).
    upstream_keepalive: Duration = 4.0
    # Idle client keep-alive connections are closed after this.
    client_keepalive: Duration = 75.0
    # On SIGTERM/SIGINT, requests in flight get this long to finish.
    shutdown_grace: Duration = 30.0


class LimitsSpec(Spec):
    max_body: Size = Field(default=100 * 2**20, ge=1)
    # All request bodies in memory at once (being received, waiting, or in flight): one that
    # does not fit is refused with 503 and Retry-After.
    max_body_buffer: Size = Field(default=256 * 2**20, ge=1)
    max_header_bytes: Size = Field(default=64 * 2**10, ge=1)
    max_header_count: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _a_whole_body_fits(self) -> LimitsSpec:
        if self.max_body_buffer < self.max_body:
            raise ValueError("max_body_buffer must be at least max_body")
        return self


class DiscoverySpec(Spec):
    # How often each backend's /v1/models is polled (models and reachability).
    interval: Duration = Field(default=10.0, ge=0.1)
    # After a refused connection, a backend is skipped for this long (or until discovery
    # reaches it again).
    unreachable_cooldown: Duration = 2.0


class ReloadSpec(Spec):
    """`warden serve -c FILE` reloads FILE on SIGHUP and, when `watch` is on, when it changes
    (its size, modification time or inode: an editor's save, a Kubernetes ConfigMap update)."""

    watch: bool = True
    interval: Duration = Field(default=1.0, gt=0)


class Settings(Spec):
    listen: HostPort = ("127.0.0.1", 8000)
    tls: TlsSpec | None = None  # serve HTTPS on `listen` (tls.cert, tls.key)
    # The admin API (/admin/*) on a listener of its own (e.g. 127.0.0.1:9000), and not on
    # `listen`; plain HTTP, checked as on `listen` (admin keys, else loopback clients only).
    admin_listen: HostPort | None = None
    # Header lines added to every answer the gateway sends (security policies:
    # Strict-Transport-Security, X-Content-Type-Options, ...), the backends' answers included.
    response_headers: dict[str, str] = {}
    cors: CorsSpec | None = None  # browser pages of other origins may call the API
    # Where the limits of keys and tenants (auth.*.limits) and per_ip_rpm are counted.
    rate_limits: RateLimitSpec = RateLimitSpec()
    # Show clients which backend answered (X-Upstream-Addr, its Server header, its name in
    # error messages). Off: the listener is reachable by clients; records and logs keep it.
    expose_upstream: bool = False
    # An upstream error text that shows the server's insides (a Python traceback, source
    # paths, engine or CUDA internals, exception reprs) reaches the client as a generic
    # message with the same status; the flight record keeps the original.
    scrub_upstream_errors: bool = True
    backends: list[BackendSpec] = Field(min_length=1)
    routing: RoutingSpec = RoutingSpec()
    scrape: ScrapeSpec = ScrapeSpec()
    health: HealthSpec = HealthSpec()
    timeouts: TimeoutsSpec = TimeoutsSpec()
    limits: LimitsSpec = LimitsSpec()
    discovery: DiscoverySpec = DiscoverySpec()
    recorder: RecorderSpec = RecorderSpec()
    guard: GuardSpec = GuardSpec()
    reload: ReloadSpec = ReloadSpec()
    auth: AuthSpec = AuthSpec()
    logging: LoggingSpec = LoggingSpec()  # the gateway's own log lines, the access log
    tracing: TracingSpec = TracingSpec()  # OpenTelemetry spans, one per request
    loop_probe: LoopProbeSpec = LoopProbeSpec()  # how often the loop's lag is sampled

    @property
    def quarantine_file(self) -> Path:
        """Where the quarantine's memory store keeps its entries."""
        return Path(self.guard.quarantine.file or Path(self.recorder.dir) / "quarantine.json")

    @field_validator("response_headers")
    @classmethod
    def _header_lines(cls, headers: dict[str, str]) -> dict[str, str]:
        return checked_headers(headers)

    @model_validator(mode="after")
    def _unique_backends(self) -> Settings:
        seen_names: set[str] = set()
        seen_addresses: set[str] = set()
        for backend in self.backends:
            if backend.name in seen_names:
                raise ValueError(f"backend name {backend.name!r} is used twice")
            if backend.address in seen_addresses:
                raise ValueError(f"backend address {backend.address} is used twice")
            seen_names.add(backend.name)
            seen_addresses.add(backend.address)
        return self

    @model_validator(mode="after")
    def _cost_budgets_priced(self) -> Settings:
        """A cost budget counts nothing without prices: say so now, not at the first
        request (a model with no price is refused under a cost budget; "*" prices the rest)."""
        grants = [*self.auth.keys, *self.auth.tenants.values()]
        if not self.rate_limits.prices and any(
                g.limits is not None and g.limits.budget is not None
                and g.limits.budget.cost is not None for g in grants):
            raise ValueError("a key or tenant has a cost budget but rate_limits.prices is "
                             "empty: give each model's price (per million tokens, input and "
                             "output; \"*\" for every other model)")
        return self
