"""API keys and tenants, held in memory: the data path never waits on a store.

Keys are high-entropy (`new_key`: 32 random bytes), so a key is stored as its SHA-256 (a slow
password hash buys nothing against 256 bits of entropy and would cost every request). A
presented key is hashed once and looked up by its digest: what the look-up takes depends on
the digest only (the dict compares bytes only after their keyed 64-bit hashes match), so a
guesser could learn at most something of a stored digest, and a digest gives no key (256 bits
of entropy behind SHA-256); nothing of how much of a guess is right. The dict's own
comparison confirms the entry (a second, constant-time one would add nothing).

A client connection remembers the key its client last presented that was found, and that
key's digest (`ProvenKey`): its next request presenting the same bytes skips the hash (~5k
instructions) for a constant-time comparison (~0.4k); the ring is still asked by the digest,
so a key revoked or changed meanwhile is refused at once. Only a found key is remembered, for
as long as the connection lives (its keep-alive timeout, idle).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from hmac import compare_digest

from warden.config.auth_schema import MAX_KEY_LENGTH, AuthSpec, GrantSpec, SecretSpec
from warden.config.limits_schema import LimitValues

PREFIX = "wk-"


def new_key() -> str:
    """A new client or admin key: `wk-` and 43 URL-safe characters (256 random bits)."""
    return PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def key_hash(key: str | bytes) -> str:
    """What the config stores for `key`: `sha256:` and its hex digest."""
    raw = key.encode() if isinstance(key, str) else key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _digest(secret: SecretSpec) -> bytes:
    if secret.hash is not None:
        return bytes.fromhex(secret.hash.removeprefix("sha256:"))
    assert secret.value is not None
    return hashlib.sha256(secret.value.encode()).digest()


class Models:
    """Which models a grant allows: every one, or those matching its names and globs."""

    def __init__(self, patterns: list[str] | None):
        self.every = patterns is None
        self._exact = frozenset(p for p in patterns or () if not _is_glob(p))
        globs = [fnmatch.translate(p) for p in patterns or () if _is_glob(p)]
        self._globs = re.compile("|".join(globs)) if globs else None
        self._seen: dict[str, bool] = {}  # model -> allowed (few models: bounded)

    def allow(self, model: str) -> bool:
        if self.every:
            return True
        allowed = self._seen.get(model)
        if allowed is None:
            allowed = model in self._exact or (
                self._globs is not None and self._globs.fullmatch(model) is not None)
            if len(self._seen) < 1024:
                self._seen[model] = allowed
        return allowed


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@dataclass(frozen=True)
class Tenant:
    name: str
    models: Models
    priority: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    limits: LimitValues | None = None
    cache_salt: str | None = None  # set on every request of its keys (isolate_cache)


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: Tenant | None
    models: Models
    priority: int | None = None
    expires_at: float | None = None  # time.time()
    metadata: dict[str, str] = field(default_factory=dict)
    limits: LimitValues | None = None

    def allows(self, model: str) -> bool:
        """Both the key and its tenant must allow `model`."""
        return self.models.allow(model) and (self.tenant is None
                                             or self.tenant.models.allow(model))

    @property
    def tenant_name(self) -> str | None:
        return self.tenant.name if self.tenant is not None else None

    @property
    def effective_priority(self) -> int | None:
        return self.priority if self.priority is not None \
            else self.tenant.priority if self.tenant is not None else None


def _grant(spec: GrantSpec) -> dict:
    return {"models": Models(spec.models), "priority": spec.priority,
            "metadata": dict(spec.metadata), "limits": spec.limits}


class ProvenKey:
    """A connection's memo (`ClientStream.proven_key`): the bytes of the key it last
    presented that the ring found, and their digest. Compared with `compare_digest`, whose
    time does not depend on the bytes (at most on the lengths, Python's docs say; CPython's
    runs over its second argument, the memo, whatever the first's length): a guess on that
    connection is told nothing of the remembered key but, at most, its length, which is no
    secret (`new_key`'s keys are all 46 characters)."""

    __slots__ = ("digest", "presented")

    def __init__(self) -> None:
        self.presented = b""
        self.digest = b""


class KeyRing:
    """The keys a gateway accepts, by digest. The admin keys' ring is built whole from each
    config; the client keys' ring lives as long as the process, fed by the config and the
    key store (tenancy.client_keys), and changed only from the event loop: a request sees
    it before a change or after it, never half of one."""

    def __init__(self, keys: dict[bytes, ApiKey]):
        self._by_digest = dict(keys)

    def put(self, digest: bytes, key: ApiKey) -> None:
        self._by_digest[digest] = key

    def remove(self, digest: bytes) -> None:
        self._by_digest.pop(digest, None)

    def replace(self, keys: dict[bytes, ApiKey]) -> None:
        """Every key at once (a new dict, swapped in whole)."""
        self._by_digest = dict(keys)

    @classmethod
    def clients(cls, spec: AuthSpec) -> KeyRing:
        return cls(config_keys(spec, tenants_of(spec)))

    @classmethod
    def admins(cls, spec: AuthSpec) -> KeyRing:
        return cls({_digest(k): ApiKey(k.id, None, Models(None)) for k in spec.admin_keys})

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, presented: bytes, proven: ProvenKey | None = None) -> ApiKey | None:
        """The key `presented` is (None: no such key). Longer than any key: None at once.
        `proven`: the connection's memo (its digest used if `presented` is the same bytes;
        updated when a key is found)."""
        if len(presented) > MAX_KEY_LENGTH:
            return None
        # (`sha256` and `compare_digest` by name: a module global each, where
        # `hashlib.sha256` would be a module attribute look-up more, ~300 instructions.)
        if proven is not None and compare_digest(presented, proven.presented):
            digest = proven.digest   # (the same bytes as found before: the same digest)
        else:
            digest = sha256(presented).digest()
        key = self._by_digest.get(digest)  # (by a digest the guesser cannot steer)
        if key is None:
            return None
        if proven is not None:
            proven.presented = presented
            proven.digest = digest
        return key


def tenants_of(spec: AuthSpec) -> dict[str, Tenant]:
    secret = (spec.cache_salt_secret or "").encode()
    return {name: Tenant(name, **_grant(t), cache_salt=_salt(secret, name)
                         if t.isolate_cache else None) for name, t in spec.tenants.items()}


def _salt(secret: bytes, tenant: str) -> str:
    """A tenant's prefix-cache salt: unguessable without the secret, one per tenant."""
    return "t-" + hmac.new(secret, tenant.encode(), hashlib.sha256).hexdigest()[:32]


def config_keys(spec: AuthSpec, tenants: dict[str, Tenant]) -> dict[bytes, ApiKey]:
    """The config's client keys, by digest, each with its tenant (from `tenants`)."""
    return {_digest(k): ApiKey(k.id, tenants[k.tenant] if k.tenant is not None else None,
                               **_grant(k), expires_at=_epoch(k.expires)) for k in spec.keys}


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def presented_key(authorization: bytes | None, api_key: bytes | None) -> bytes | None:
    """The key a request presents: `Authorization: Bearer KEY` (the scheme in any case), else
    `api-key: KEY` (Azure's clients). None: none, or not in that form."""
    if authorization is not None:
        # (The usual form, `Bearer KEY` with no space around the key, by compiled bytes
        # operations; any other, the same answer by the interpreter's methods, ~1.5k
        # instructions more. Whitespace bytes are all <= 32.)
        if authorization.startswith(b"Bearer ") and len(authorization) > 7 \
                and authorization[7] > 32 and authorization[-1] > 32:
            return authorization[7:]
        scheme, _, value = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        value = value.strip()
        return value or None
    if api_key is not None:
        return api_key.strip() or None
    return None
