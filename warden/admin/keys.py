"""The admin API's key routes, served through admin.routes: the client keys this gateway
accepts and, with a key store (auth.store), making, revoking and rotating them.

    GET  /admin/keys             every key, the config's and the store's, the tenants, and the
                                 store's state; each with its budget's usage (docs/limits.md)
    POST /admin/keys             {"id", "tenant", "models", "priority", "expires", "metadata",
                                 "limits"}: a new key (201), shown this once
    GET  /admin/keys/ID          one key
    POST /admin/keys/ID/revoke   refused from now on, by every gateway of the store
    POST /admin/keys/ID/rotate   a new key for the same id and grants, shown this once; the old
                                 one is refused from now on

Never a key (but the new one, once) nor its hash. Without a store the keys come from the config
file, and a change answers 409 saying so. Not on the data path (so not compiled)."""

from __future__ import annotations

import time
from collections.abc import Coroutine

import orjson
from pydantic import ValidationError

from warden.config.auth_schema import StoredKeySpec
from warden.config.limits_schema import LimitValues
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error, respond_json
from warden.errors import (
    Conflict,
    InvalidRequest,
    KeyStoreUnavailable,
    MethodNotAllowed,
    NotFound,
    WardenError,
)
from warden.tenancy.client_keys import ClientKeys, StoredKey, describe_config_key
from warden.tenancy.key_store import KeyStore
from warden.tenancy.limiter import Limiter

KEYS = "/admin/keys"
ACTIONS = ("revoke", "rotate")
NO_STORE = ("keys come from the config file on this gateway (auth.keys): change them there and "
            "reload (warden reload); to make and revoke keys through the admin API, configure "
            "auth.store (PostgreSQL)")


class KeysAdmin:
    def __init__(self, keys: ClientKeys, store: KeyStore | None, required: bool = True,
                 limiter: Limiter | None = None):
        """`store`: None when the keys come from the config file only; `required`: requests
        need a key (auth.mode); `limiter`: where budgets are counted (None: limits off)."""
        self._keys = keys
        self._store = store
        self._required = required
        self._limiter = limiter

    def handle(self, request: HttpRequest, client: HttpConnection,
               rid: bytes) -> Coroutine[None, None, None] | None:
        """Any path under `KEYS`: the route's coroutine, or None once refused."""
        steps = request.path[len(KEYS):].strip("/").split("/") if request.path != KEYS else []
        reading = request.method in ("GET", "HEAD")
        if len(steps) > 2 or (len(steps) == 2 and steps[1] not in ACTIONS) or "" in steps:
            respond_error(client, NotFound(
                f"Unknown path: {request.path} (expected {KEYS}, {KEYS}/ID, "
                f"{KEYS}/ID/revoke or {KEYS}/ID/rotate)"), rid)
            return None
        allowed = ("GET", "HEAD", "POST") if not steps else ("GET", "HEAD") \
            if len(steps) == 1 else ("POST",)
        if request.method not in allowed:
            respond_error(client, MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}"), rid)
            return None
        if not steps:
            work = self._list() if reading else self._create(request.body)
        elif len(steps) == 1:
            work = self._show(steps[0])
        else:
            work = self._act(steps[0], steps[1])
        return _answer(work, client, rid)

    def ready(self) -> dict | None:
        """What `/ready` says of the key store (None: no store)."""
        return self._store.state() if self._store is not None else None

    @property
    def unready(self) -> bool:
        """Whether keys are required and the store's were never read: its clients would be
        refused here, so the gateway is not ready."""
        return self._required and self._store is not None and not self._store.loaded

    async def _list(self) -> tuple[int, dict]:
        listed = [self._config_entry(k) for k in self._keys.config]
        read_from = None
        if self._store is not None:
            try:
                stored = await self._store.every()
                read_from = "database"
            except KeyStoreUnavailable:
                stored = sorted(self._keys.stored.values(), key=lambda k: k.id)
                read_from = "memory"  # (what this gateway holds: no revoked keys)
            listed += [self._stored_entry(k) for k in stored]
        tenants = {name: {"limits": _limits_shown(tenant.limits), "budget": None}
                   for name, tenant in sorted(self._keys.tenant_grants.items())}
        await self._budgets(listed, tenants)
        return 200, {"keys": listed, "tenants": tenants, "read_from": read_from,
                     "store": self.ready()}

    async def _budgets(self, listed: list[dict], tenants: dict[str, dict]) -> None:
        """Each entry's `budget`: its usage this period (tenancy/usage.py), or None (no
        budget, or limits off). One read of the store for all of them."""
        subjects: list[tuple[str, LimitValues]] = []
        for entry in listed:
            entry["budget"] = None
            limits = _parsed(entry.get("limits"))
            if limits is not None and limits.budget is not None:
                subjects.append(("key:" + entry["id"], limits))
        for name, tenant in self._keys.tenant_grants.items():
            if tenant.limits is not None and tenant.limits.budget is not None:
                subjects.append(("tenant:" + name, tenant.limits))
        if self._limiter is None or not subjects:
            return
        found = {row["subject"]: row for row in
                 await self._limiter.budget_usage(subjects, time.time())}
        for entry in listed:
            entry["budget"] = found.get("key:" + entry["id"])
        for name, shown in tenants.items():
            shown["budget"] = found.get("tenant:" + name)

    async def _show(self, key_id: str) -> tuple[int, dict]:
        config = next((k for k in self._keys.config if k.id == key_id), None)
        if config is not None:
            entry = self._config_entry(config)
            await self._budgets([entry], {})
            return 200, entry
        if self._store is None:
            raise NotFound(f"no key {key_id!r} in the config file (the only source of keys "
                           "here: auth.store is not configured)")
        try:
            found = await self._store.one(key_id)
        except KeyStoreUnavailable:
            found = self._keys.stored.get(key_id)
            if found is None:
                raise
        if found is None:
            raise NotFound(f"no key {key_id!r}")
        entry = self._stored_entry(found)
        await self._budgets([entry], {})
        return 200, entry

    async def _create(self, body: bytes) -> tuple[int, dict]:
        store = self._writable()
        spec = _parse(body)
        if spec.id in self._keys.config_ids:
            raise Conflict(f"the id {spec.id!r} is a key of the config file: choose another",
                           param="id")
        if spec.tenant is not None and spec.tenant not in self._keys.tenants:
            raise InvalidRequest(f"tenant {spec.tenant!r} is not in the config's auth.tenants "
                                 f"({', '.join(sorted(self._keys.tenants)) or 'none'})",
                                 param="tenant")
        made = await store.create(spec)
        if made is None:
            raise Conflict(f"the id {spec.id!r} is taken (by a key live or revoked: ids are "
                           "never reused)", param="id")
        key, row = made
        return 201, {"key": key, **self._stored_entry(row)}

    async def _act(self, key_id: str, action: str) -> tuple[int, dict]:
        if key_id in self._keys.config_ids:
            raise Conflict(f"key {key_id!r} comes from the config file: remove or replace it "
                           "there and reload (warden reload)")
        store = self._writable()
        if action == "revoke":
            row = await store.revoke(key_id)
            if row is None:
                raise NotFound(f"no key {key_id!r}")
            return 200, self._stored_entry(row)
        rotated = await store.rotate(key_id)
        if rotated is None:
            exists = await store.one(key_id)
            if exists is None:
                raise NotFound(f"no key {key_id!r}")
            raise Conflict(f"key {key_id!r} is revoked: make a new one")
        key, row = rotated
        return 200, {"key": key, **self._stored_entry(row)}

    def _writable(self) -> KeyStore:
        if self._store is None:
            raise Conflict(NO_STORE)
        return self._store

    def _config_entry(self, key) -> dict:
        entry = describe_config_key(key)
        expired = key.expires is not None and key.expires.timestamp() <= time.time()
        return {**entry, "state": "expired" if expired else "active"}

    def _stored_entry(self, key: StoredKey) -> dict:
        entry = key.describe()
        if key.revoked is not None:
            state = "revoked"
        elif key.expires is not None and key.expires.timestamp() <= time.time():
            state = "expired"
        elif key.id in self._keys.left_out:
            state = "left out: " + self._keys.left_out[key.id]
        else:
            state = "active"
        return {**entry, "state": state}


async def _answer(work: Coroutine[None, None, tuple[int, dict]], client: HttpConnection,
                  rid: bytes) -> None:
    """The route's answer, or its error in the OpenAI envelope."""
    try:
        status, body = await work
    except WardenError as e:
        respond_error(client, e, rid)
        return
    respond_json(client, status, orjson.dumps(body), rid)


def _limits_shown(limits: LimitValues | None) -> dict | None:
    return limits.model_dump(exclude_none=True) if limits is not None else None


def _parsed(limits: object) -> LimitValues | None:
    """An entry's limits as the gateway reads them (None: none, or not valid)."""
    if not isinstance(limits, dict):
        return None
    try:
        return LimitValues.model_validate(limits)
    except ValidationError:
        return None


def _parse(body: bytes) -> StoredKeySpec:
    try:
        asked = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(asked, dict):
        raise InvalidRequest('expected a JSON object: {"id": "...", "tenant": ..., '
                             '"models": [...], "priority": ..., "expires": ..., '
                             '"metadata": {...}, "limits": {...}}')
    try:
        return StoredKeySpec.model_validate(asked)
    except ValidationError as e:
        problems = [(".".join(str(p) for p in error["loc"]) or "body",
                     error["msg"].removeprefix("Value error, ")) for error in e.errors()]
        raise InvalidRequest("; ".join(f"{where}: {what}" for where, what in problems),
                             param=problems[0][0]) from None
