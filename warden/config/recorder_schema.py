"""The settings of the flight recorder (warden/record): its files, what each record keeps,
and the optional PostgreSQL sink."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from warden.config.spec import Duration, Size, Spec


def _at_least(value: float, minimum: float, shown: str) -> float:
    if value < minimum:
        raise ValueError(f"must be at least {shown}")
    return value


def _more_than_zero(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


class PostgresSinkSpec(Spec):
    """Records also go to PostgreSQL (warden/record/postgres.py); use ${ENV} for secrets."""

    dsn: str = Field(min_length=1)
    table: str = Field(default="warden_records", pattern=r"^[a-z_][a-z0-9_]{0,40}$")
    # Whole days of partitions are dropped, so a day is the least that means anything.
    retention: Duration = 30 * 86400.0
    # Each operation (connect, COPY, INSERT, retention) gives up after this.
    timeout: Duration = 10.0
    # Batches waiting for the database beyond either bound are dropped (and counted): a
    # database that hangs must not grow the gateway's memory.
    queue_size: int = Field(default=100_000, ge=1)
    queue_bytes: Size = 16 * 2**20
    # At shutdown, what is still queued after this long is dropped (counted and logged).
    drain_timeout: Duration = 5.0

    @field_validator("retention")
    @classmethod
    def _a_day_at_least(cls, value: float) -> float:
        return _at_least(value, 86400.0, "1d")

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _more_than_zero(value)

    @field_validator("queue_bytes")
    @classmethod
    def _room_for_a_batch(cls, value: int) -> int:
        return int(_at_least(value, 64 * 2**10, "64KiB"))

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return postgres_url(value)


def postgres_url(value: str) -> str:
    """The URL form, which the driver (asyncpg) requires; a keyword string such as
    `host=... dbname=...` would fail every call at run time."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("not a PostgreSQL URL (bad port)") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a PostgreSQL URL (expected postgresql://user@host:5432/db)")
    return value


# The highest level of each codec of the recorder's rotated files.
MAX_LEVELS = {"zstd": 22, "gzip": 9}
# The smallest file: a few records with their metadata (a body over a quarter file is left out).
MIN_FILE_SIZE = 4 * 2**10


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
    # How rotated files are compressed (record/codecs.py): zstd, gzip, or none. (true and
    # false, from when gzip was the only codec, mean zstd and none.)
    compress: Literal["zstd", "gzip", "none"] = "zstd"
    # The codec's level (zstd 1-22, gzip 1-9). 1: the writer shares the proxy's CPU, so speed
    # comes first (gzip's 1 is twice as fast as its 5 for ~15% more bytes; measured on records).
    compress_level: int = Field(default=1, ge=1, le=22)
    # The hard cap on all the recorder's files together; the oldest go first.
    max_total_size: Size = 2**30
    max_age: Duration = 7 * 86400.0
    max_files: int = Field(default=1000, ge=2)
    # Below this much free disk, records keep their metadata but not the bodies.
    min_free_disk: Size = 2**30
    # Records reach the file (the OS) at least this often; a SIGKILL loses at most this much.
    flush_interval: Duration = 0.2
    # Records waiting for the writer beyond either bound are dropped (and counted): a disk
    # that hangs must not grow the gateway's memory (records carry bodies).
    queue_size: int = Field(default=100_000, ge=1)
    queue_bytes: Size = 256 * 2**20
    # Optional: the same records in PostgreSQL too.
    postgres: PostgresSinkSpec | None = None

    @field_validator("compress", mode="before")
    @classmethod
    def _compress_as_bool(cls, value: object) -> object:
        if value is True:
            return "zstd"
        return "none" if value is False else value

    @field_validator("max_file_size")
    @classmethod
    def _file_holds_records(cls, value: int) -> int:
        return int(_at_least(value, MIN_FILE_SIZE, "4KiB"))

    @field_validator("queue_bytes")
    @classmethod
    def _room_for_a_flush(cls, value: int) -> int:
        return int(_at_least(value, 64 * 2**10, "64KiB"))

    @field_validator("flush_interval", "rotate_interval", "max_age")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _more_than_zero(value)

    @model_validator(mode="after")
    def _cap_holds_files(self) -> RecorderSpec:
        if self.max_file_size * 4 > self.max_total_size:
            raise ValueError("max_total_size must hold at least four files of max_file_size")
        return self

    @model_validator(mode="after")
    def _level_in_range(self) -> RecorderSpec:
        highest = MAX_LEVELS.get(self.compress)
        if highest is not None and self.compress_level > highest:
            raise ValueError(f"compress_level: {self.compress} goes up to {highest}")
        return self
