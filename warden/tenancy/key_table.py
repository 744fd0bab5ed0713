"""The key store's table in PostgreSQL and every statement run on it (tenancy.key_store runs
them, one at a time, on its one connection).

`<schema>.api_keys` holds one row per key ever made: a revoked key keeps its row (`revoked`
set), so an id is never reused and the records that name it stay unambiguous. The key itself
is never stored, only its SHA-256 (`sha256`). `limits` is kept and handed on as written.

A trigger notifies the channel `<schema>.api_keys` of every row written, however it was
written (the admin API, or SQL by hand): `-ID` when the key stops working (revoked or
deleted), `+ID` otherwise (made, rotated, changed). Every gateway listening drops a `-` at
once and reads a `+` back. Needs PostgreSQL 11 or later.
"""

from __future__ import annotations

import json
from typing import Any

from warden.config.auth_schema import StoredKeySpec
from warden.tenancy.client_keys import StoredKey

COLUMNS = ("id, sha256, tenant, models, priority, expires, metadata, limits, created, "
           "revoked, rotated, xmin::text AS version")

_TABLE = """CREATE TABLE {s}.api_keys (
    id text PRIMARY KEY,
    sha256 bytea NOT NULL UNIQUE,
    tenant text,
    models text[],
    priority integer,
    expires timestamptz,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    limits jsonb,
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz,
    rotated timestamptz)"""

_NOTIFY = """CREATE OR REPLACE FUNCTION {s}.api_keys_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.api_keys', '-' || OLD.id);
    ELSIF NEW.revoked IS NOT NULL THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.api_keys', '-' || NEW.id);
    ELSE
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.api_keys', '+' || NEW.id);
    END IF;
    RETURN NULL;
END $$"""

_TRIGGER = """CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE
ON {s}.api_keys FOR EACH ROW EXECUTE FUNCTION {s}.api_keys_notify()"""


def channel(schema: str) -> str:
    return f"{schema}.api_keys"


async def prepare(conn: Any, schema: str) -> None:
    """Decode JSON columns; make the schema, the table and its trigger if missing (under a
    lock, so that gateways starting together do not race; what exists is not touched, so a
    role that may not create them works once they are made)."""
    for kind in ("jsonb", "json"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")
    exists = await conn.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'api_keys_notify' "
        "AND tgrelid = to_regclass($1)", f"{schema}.api_keys")
    if exists:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", channel(schema))
        if not await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                                   schema):
            await conn.execute(f"CREATE SCHEMA {schema}")
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.api_keys") is None:
            await conn.execute(_TABLE.format(s=schema))
        await conn.execute(_NOTIFY.format(s=schema))
        await conn.execute(f"DROP TRIGGER IF EXISTS api_keys_notify ON {schema}.api_keys")
        await conn.execute(_TRIGGER.format(s=schema))


def stored(row: Any) -> StoredKey:
    fields = dict(row)
    fields["digest"] = bytes(fields.pop("sha256"))
    fields["metadata"] = fields["metadata"] or {}
    return StoredKey(**fields)


async def live(conn: Any, schema: str) -> list[StoredKey]:
    """Every key not revoked."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM {schema}.api_keys WHERE revoked IS NULL")
    return [stored(row) for row in rows]


async def versions(conn: Any, schema: str) -> dict[str, str]:
    """Every key not revoked: its row's version (cheap: what a catch-up compares)."""
    rows = await conn.fetch(
        f"SELECT id, xmin::text AS version FROM {schema}.api_keys WHERE revoked IS NULL")
    return {row["id"]: row["version"] for row in rows}


async def some(conn: Any, schema: str, ids: list[str]) -> dict[str, StoredKey]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM {schema}.api_keys WHERE id = ANY($1)",
                            ids)
    return {row["id"]: stored(row) for row in rows}


async def every(conn: Any, schema: str) -> list[StoredKey]:
    """Every key ever made, revoked ones too, by id."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM {schema}.api_keys ORDER BY id")
    return [stored(row) for row in rows]


async def insert(conn: Any, schema: str, spec: StoredKeySpec,
                 digest: bytes) -> StoredKey | None:
    """The new row; None when the id is taken (by a key live or revoked)."""
    row = await conn.fetchrow(
        f"INSERT INTO {schema}.api_keys (id, sha256, tenant, models, priority, expires, "
        f"metadata, limits) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        f"ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}",
        spec.id, digest, spec.tenant, spec.models, spec.priority, spec.expires,
        dict(spec.metadata),
        spec.limits.model_dump(exclude_none=True) if spec.limits is not None else None)
    return stored(row) if row is not None else None


async def revoke(conn: Any, schema: str, key_id: str) -> StoredKey | None:
    """The key's row, revoked now (or already); None: no such key."""
    row = await conn.fetchrow(
        f"UPDATE {schema}.api_keys SET revoked = now() WHERE id = $1 AND revoked IS NULL "
        f"RETURNING {COLUMNS}", key_id)
    if row is None:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM {schema}.api_keys WHERE id = $1",
                                  key_id)
    return stored(row) if row is not None else None


async def rotate(conn: Any, schema: str, key_id: str, digest: bytes) -> StoredKey | None:
    """The key's row with its new digest; None: no such key, or it is revoked."""
    row = await conn.fetchrow(
        f"UPDATE {schema}.api_keys SET sha256 = $2, rotated = now() WHERE id = $1 "
        f"AND revoked IS NULL RETURNING {COLUMNS}", key_id, digest)
    return stored(row) if row is not None else None
