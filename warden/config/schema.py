"""The settings schema. Every field has a default except `backends`; unknown keys are errors,
so a typo never silently falls back to a default."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from warden.config.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def parse_host_port(value: object) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) == 2:  # already parsed (built in code)
        return value
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("not HOST:PORT (e.g. 127.0.0.1:8000)")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("not HOST:PORT (e.g. 127.0.0.1:8000)")
    return host, int(port_text)


HostPort = Annotated[tuple[str, int], BeforeValidator(parse_host_port)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not a URL (expected http://host:port)")
        if parts.scheme == "https":
            raise ValueError("https backends are not supported yet; use http://")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("must be a base URL without a path (http://host:port)")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("not a URL (bad port)") from None
        return value.rstrip("/")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class RoutingSpec(Spec):
    policy: Literal["round_robin", "least_request"] = "least_request"


class TimeoutsSpec(Spec):
    connect: Duration = 5.0
    # From the request being sent to the first response byte (prefill can be long).
    first_byte: Duration = 600.0
    # Longest silence between two response chunks.
    idle: Duration = 600.0
    # How long a request may wait for a free upstream connection.
    pool: Duration = 5.0
    # Idle keep-alive upstream connections are closed after this (uvicorn closes at 5 s).
    upstream_keepalive: Duration = 4.0
    # Idle client keep-alive connections are closed after this.
    client_keepalive: Duration = 75.0
    # On SIGTERM/SIGINT, requests in flight get this long to finish.
    shutdown_grace: Duration = 30.0


class LimitsSpec(Spec):
    max_body: Size = 100 * 2**20
    max_header_bytes: Size = 64 * 2**10


class DiscoverySpec(Spec):
    # How often each backend's /v1/models is polled (models and reachability).
    interval: Duration = 10.0
    # After a refused connection, a backend is skipped for this long (or until discovery
    # reaches it again).
    unreachable_cooldown: Duration = 2.0


class GuardSpec(Spec):
    """The crash-rule pack (warden/guard): enforce it, only report it, or neither."""

    mode: Literal["enforce", "dry_run", "off"] = "enforce"
    disable: list[str] = []  # rule ids

    @field_validator("disable")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        from warden.guard.rules import RULES

        unknown = sorted(set(value) - {rule.id for rule in RULES})
        if unknown:
            raise ValueError(f"unknown guard rule {', '.join(unknown)}")
        return value


class PostgresSinkSpec(Spec):
    """Records also go to PostgreSQL (warden/record/postgres.py); use ${ENV} for secrets."""

    dsn: str = Field(min_length=1)
    table: str = Field(default="warden_records", pattern=r"^[a-z_][a-z0-9_]{0,40}$")
    retention: Duration = 30 * 86400.0


class RecorderSpec(Spec):
    """The flight recorder (warden/record): every proxied request on disk, bounded."""

    enabled: bool = True
    dir: str = "warden-records"
    # What of the response is kept: nothing, its summary (finish reasons, usage), or its
    # body (a stream's reassembled text).
    response: Literal["none", "summary", "full"] = "summary"
    # Request header fields kept in each record (secrets are always redacted).
    headers: list[str] = ["user-agent", "content-type", "x-forwarded-for"]
    max_file_size: Size = 64 * 2**20
    rotate_interval: Duration = 3600.0
    compress: bool = True
    # The hard cap on all the recorder's files together; the oldest go first.
    max_total_size: Size = 2**30
    max_age: Duration = 7 * 86400.0
    max_files: int = Field(default=1000, ge=2)
    # Below this much free disk, records keep their metadata but not the bodies.
    min_free_disk: Size = 2**30
    # Records reach the file (the OS) at least this often; a SIGKILL loses at most this much.
    flush_interval: Duration = 0.2
    # Records waiting for the writer beyond this are dropped (and counted).
    queue_size: int = Field(default=100_000, ge=1)
    # Optional: the same records in PostgreSQL too.
    postgres: PostgresSinkSpec | None = None

    @model_validator(mode="after")
    def _cap_holds_files(self) -> RecorderSpec:
        if self.max_file_size * 4 > self.max_total_size:
            raise ValueError("max_total_size must hold at least four files of max_file_size")
        return self


class Settings(Spec):
    listen: HostPort = ("127.0.0.1", 8000)
    backends: list[BackendSpec] = Field(min_length=1)
    routing: RoutingSpec = RoutingSpec()
    timeouts: TimeoutsSpec = TimeoutsSpec()
    limits: LimitsSpec = LimitsSpec()
    discovery: DiscoverySpec = DiscoverySpec()
    recorder: RecorderSpec = RecorderSpec()
    guard: GuardSpec = GuardSpec()

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
