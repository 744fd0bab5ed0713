"""The client keys a gateway accepts, from two sources: the config file (rebuilt at each load)
and the key store (PostgreSQL: tenancy.key_store, changed one key at a time). Both feed one
`KeyRing`, which lives as long as the process and is the one every runtime's AuthStage reads:
a request costs one dict look-up whichever source its key came from, and never waits on the
database.

Rules:
- ids are unique across both sources: the store refuses to create a key with an id the config
  uses (a client or an admin key); a stored key whose id a reloaded config takes is left out
  while the config uses it, and the log says so;
- a stored key's tenant is one of the config's `auth.tenants`. A stored key whose tenant the
  config does not name is left out (refused, 401): without its tenant's grants it would be
  allowed more, never less. A reload that names the tenant again brings it back;
- every live stored key (not revoked; expired ones too, so that their clients are told why)
  is held in memory, as the config's are: the whole key set, a few hundred bytes a key.
  Keys that grant the same models share one `Models`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from warden.config.auth_schema import AuthSpec, KeySpec
from warden.config.limits_schema import LimitValues
from warden.tenancy.keys import ApiKey, KeyRing, Models, Tenant, config_keys, tenants_of

log = logging.getLogger("warden.keys")


@dataclass(frozen=True)
class StoredKey:
    """A row of the key store's table, as read (never the key: its SHA-256 only)."""

    id: str
    digest: bytes
    tenant: str | None
    models: list[str] | None
    priority: int | None
    expires: datetime | None
    metadata: dict[str, str]
    limits: dict | None
    created: datetime
    revoked: datetime | None
    rotated: datetime | None
    version: str  # the row's version (PostgreSQL's xmin): a new one at every write

    def describe(self) -> dict:
        """As the admin API shows it: never the key nor its hash."""
        return {"id": self.id, "source": "store", "tenant": self.tenant,
                "models": self.models, "priority": self.priority,
                "expires": _iso(self.expires), "metadata": self.metadata,
                "limits": self.limits, "created": _iso(self.created),
                "rotated": _iso(self.rotated), "revoked": _iso(self.revoked)}


def describe_config_key(key: KeySpec) -> dict:
    return {"id": key.id, "source": "config", "tenant": key.tenant, "models": key.models,
            "priority": key.priority, "expires": _iso(key.expires),
            "metadata": dict(key.metadata),
            "limits": key.limits.model_dump(exclude_none=True) if key.limits is not None
            else None}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class ClientKeys:
    def __init__(self) -> None:
        self.ring = KeyRing({})
        self.config: list[KeySpec] = []       # the config's client keys, as written
        self.config_ids: frozenset[str] = frozenset()  # its client and admin key ids
        self.stored: dict[str, StoredKey] = {}  # every live stored key held, by id
        self.left_out: dict[str, str] = {}    # stored keys not accepted: id -> why
        self._config_keys: dict[bytes, ApiKey] = {}
        self._tenants: dict[str, Tenant] = {}
        self._accepted: dict[str, bytes] = {}  # stored keys in the ring: id -> digest
        self._models: dict[tuple[str, ...] | None, Models] = {}

    def use_config(self, spec: AuthSpec) -> None:
        """A config's keys and tenants take over from the last config's; the stored keys
        stay, each under the new config's grant for its tenant."""
        self._tenants = tenants_of(spec)
        self._config_keys = config_keys(spec, self._tenants)
        self.config = list(spec.keys)
        self.config_ids = frozenset([k.id for k in spec.keys] + [k.id for k in spec.admin_keys])
        self._rebuild()

    def replace_stored(self, keys: list[StoredKey]) -> None:
        """The store's whole live set (read at (re)connect, or to catch up)."""
        self.stored = {key.id: key for key in keys}
        self._rebuild()

    def put(self, key: StoredKey) -> None:
        """A stored key made or changed (rotated: a new digest; the old one stops at once)."""
        if key.revoked is not None:
            self.drop(key.id)
            return
        self.stored[key.id] = key
        old = self._accepted.pop(key.id, None)
        if old is not None:
            self.ring.remove(old)
        accepted = self._accept(key)
        if accepted is not None:
            self._accepted[key.id] = key.digest
            self.ring.put(key.digest, accepted)

    def drop(self, key_id: str) -> None:
        """A stored key revoked (or deleted): refused from now on."""
        self.stored.pop(key_id, None)
        self.left_out.pop(key_id, None)
        digest = self._accepted.pop(key_id, None)
        if digest is not None:
            self.ring.remove(digest)

    @property
    def tenant_grants(self) -> dict[str, Tenant]:
        """The config's tenants, by name."""
        return self._tenants

    @property
    def tenants(self) -> frozenset[str]:
        """The config's tenants (a stored key may name one of these only)."""
        return frozenset(self._tenants)

    def _rebuild(self) -> None:
        self._models = {}
        merged = dict(self._config_keys)
        self._accepted = {}
        for key in self.stored.values():
            accepted = self._accept(key)
            if accepted is not None:
                self._accepted[key.id] = key.digest
                merged[key.digest] = accepted
        self.ring.replace(merged)

    def _accept(self, key: StoredKey) -> ApiKey | None:
        """`key` as the ring holds it, or None when it is left out (logged once)."""
        why, limits = None, None
        try:  # (written by the admin API, which checks them; or by hand, in SQL)
            limits = LimitValues.model_validate(key.limits) if key.limits else None
        except ValidationError as e:
            why = f"its limits are not valid ({e.errors()[0]['msg']})"
        if why is None and key.id in self.config_ids:
            why = "its id is also a key of the config file, which wins"
        elif key.tenant is not None and key.tenant not in self._tenants:
            why = f"its tenant {key.tenant!r} is not in the config's auth.tenants"
        if why is not None:
            if self.left_out.get(key.id) != why:
                log.warning("stored key %r is not accepted: %s", key.id, why)
            self.left_out[key.id] = why
            return None
        self.left_out.pop(key.id, None)
        return ApiKey(key.id, self._tenants[key.tenant] if key.tenant is not None else None,
                      self._models_for(key.models), key.priority,
                      key.expires.timestamp() if key.expires is not None else None,
                      key.metadata, limits)

    def _models_for(self, patterns: list[str] | None) -> Models:
        shape = tuple(patterns) if patterns is not None else None
        models = self._models.get(shape)
        if models is None:
            models = self._models[shape] = Models(patterns)
        return models
