"""Settings of the gateway's clients: API keys, the tenants they belong to, and the admin
API's own keys (auth.*)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from warden.config.limits_schema import LimitValues
from warden.config.recorder_schema import postgres_url
from warden.config.spec import Duration, Spec

KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TENANT = KEY_ID
# A key's stored form: "sha256:" and 64 hex digits (`warden keys hash` prints it).
HASH = re.compile(r"sha256:[0-9a-f]{64}")
# The longest key accepted (a generated one has 46 characters; longer ones are refused before
# any hashing, so a 10 KB header costs nothing).
MAX_KEY_LENGTH = 256
# A PostgreSQL schema's name (it is written into SQL: a plain lower-case identifier only).
SCHEMA = r"^[a-z_][a-z0-9_]{0,40}$"


class SecretSpec(Spec):
    """A key given by its hash (what the config should hold) or its value (`${ENV}`, or a
    literal for a test setup); exactly one of the two."""

    id: str = Field(pattern=KEY_ID)
    hash: str | None = None
    value: str | None = Field(default=None, repr=False)

    @field_validator("hash")
    @classmethod
    def _hash_form(cls, value: str | None) -> str | None:
        if value is not None and not HASH.fullmatch(value):
            raise ValueError("not sha256:<64 lowercase hex digits> (warden keys hash prints "
                             "it)")
        return value

    @field_validator("value")
    @classmethod
    def _value_form(cls, value: str | None) -> str | None:
        if value is not None and not (16 <= len(value) <= MAX_KEY_LENGTH and value.isascii()
                                      and value.isprintable() and " " not in value):
            raise ValueError(f"a key is 16 to {MAX_KEY_LENGTH} printable ASCII characters "
                             "without spaces (warden keys new makes one)")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> SecretSpec:
        if (self.hash is None) == (self.value is None):
            raise ValueError(f"key {self.id!r}: give exactly one of hash, value")
        return self

    @property
    def stored_form(self) -> str:
        """The key's hash, however it was given (to find one key given twice)."""
        if self.hash is not None:
            return self.hash
        return "sha256:" + hashlib.sha256((self.value or "").encode()).hexdigest()


class GrantSpec(Spec):
    """What a key or a tenant may do. Both apply: a key may use a model only when its tenant
    may too."""

    # Model names or globs (`llama-*`); None: every model the fleet serves.
    models: list[str] | None = None
    # Sent to vLLM as the request's `priority` (engines run with --scheduling-policy
    # priority), unless the client set one. Lower runs first, as in vLLM.
    priority: int | None = None
    metadata: dict[str, str] = {}
    # Requests and tokens a minute, requests in flight (rate_limits says where they are
    # counted); a key's and its tenant's both apply.
    limits: LimitValues | None = None


class KeySpec(SecretSpec, GrantSpec):
    tenant: str | None = Field(default=None, pattern=TENANT)
    expires: datetime | None = None  # with a time zone; after it, the key is refused (401)

    @field_validator("expires")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        return _zoned(value)


class StoredKeySpec(GrantSpec):
    """A key to create in the key store (`POST /admin/keys`): a config key's grants (its
    limits included), never its secret (the gateway makes the key)."""

    id: str = Field(pattern=KEY_ID)
    tenant: str | None = Field(default=None, pattern=TENANT)
    expires: datetime | None = None

    @field_validator("expires")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        return _zoned(value)


def _zoned(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2027-01-01T00:00:00Z)")
    return value


class TenantSpec(GrantSpec):
    # Its requests never share vLLM prefix-cache blocks with another tenant's: each gets the
    # tenant's own `cache_salt` (from auth.cache_salt_secret), whatever the client sent.
    isolate_cache: bool = False


class KeyStoreSpec(Spec):
    """Keys kept in PostgreSQL (warden/tenancy/key_store.py), made and revoked through the
    admin API, shared by every gateway that names the same database and schema."""

    url: str = Field(min_length=1)  # postgresql://user@host:5432/db (use ${ENV})
    # (`schema` in the file: the Python name would shadow pydantic's own `schema`.)
    schema_name: str = Field(default="warden", alias="schema", pattern=SCHEMA)
    # A full comparison with the table this often: the safety net under the notifications.
    refresh: Duration = 60.0
    timeout: Duration = 5.0  # each database call (connect, load, write) gives up after it

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return postgres_url(value)

    @field_validator("refresh", "timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value


class AuthSpec(Spec):
    # off: anyone who reaches the port may use every model (as without this section);
    # required: every proxied request needs a key from `keys`.
    mode: Literal["off", "required"] = "off"
    keys: list[KeySpec] = []
    tenants: dict[str, TenantSpec] = {}
    # Keys for /admin/* (never valid as client keys). None configured: the admin API answers
    # loopback clients only.
    admin_keys: list[SecretSpec] = []
    # /metrics: open to anyone who reaches the port, or behind the admin API's check.
    metrics: Literal["public", "admin"] = "public"
    # Keys kept in PostgreSQL too (None: the config's keys only).
    store: KeyStoreSpec | None = None
    # What tenants' cache salts are derived from (tenants.NAME.isolate_cache): a secret (use
    # ${ENV}), the same on every replica, so no client can guess another tenant's salt.
    cache_salt_secret: str | None = Field(default=None, min_length=16, repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> AuthSpec:
        problems = []
        ids = [key.id for key in self.keys] + [key.id for key in self.admin_keys]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            problems.append(f"key ids used twice: {', '.join(twice)}")
        # (One key under two ids: the last one's tenant, models and limits would silently be
        # the first one's client's too, and an admin key would be a client key as well.)
        by_secret: dict[str, list[str]] = {}
        for key in [*self.keys, *self.admin_keys]:
            by_secret.setdefault(key.stored_form, []).append(key.id)
        for same in by_secret.values():
            if len(same) > 1:
                problems.append(f"keys {', '.join(same)} are one key (the same secret)")
        for key in self.keys:
            if key.tenant is not None and key.tenant not in self.tenants:
                problems.append(f"key {key.id!r}: tenant {key.tenant!r} is not in "
                                "auth.tenants")
        if any(t.isolate_cache for t in self.tenants.values()) and not self.cache_salt_secret:
            problems.append("a tenant isolates its cache: set auth.cache_salt_secret")
        if self.mode == "required" and not self.keys and self.store is None:
            problems.append("mode required with no keys (and no auth.store) would refuse "
                            "every request")
        for name in self.tenants:
            if not re.fullmatch(TENANT, name):
                problems.append(f"tenant name {name!r}: letters, digits, . _ : - (up to 64)")
        if problems:
            raise ValueError("; ".join(problems))
        return self
