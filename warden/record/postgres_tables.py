"""The PostgreSQL sink's tables (record/postgres.py writes to them): `<table>`, partitioned by
day on `received`, its default partition and its index on `id`, made if missing; and each
connection's staging table, of the type the records' column has.

The records' column is `jsonb` (the default: parsed once, as it is written; queries read it
without parsing again and can use GIN indexes and containment) or `json` (`record_type:
json`: the text checked and kept as it is, about 40% less of the database's CPU a record;
every query that reads a field parses the record again, and there are no GIN indexes). The
type is chosen when the table is made: an existing table keeps its own (a config that asks
for the other is logged, and the records are converted as they are inserted)."""

from __future__ import annotations

import logging

RECORD_TYPES = ("jsonb", "json")
STAGING = "warden_staging"


async def prepare(conn, table: str, record_type: str, log: logging.Logger) -> str:
    """Make what is missing; returns the records' column type the table has."""
    if record_type not in RECORD_TYPES:   # (the spec allows no other: these go into SQL)
        raise ValueError(f"record_type must be one of {RECORD_TYPES}")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (received timestamptz NOT NULL, "
        f"id text NOT NULL, type text NOT NULL, record {record_type} NOT NULL) "
        f"PARTITION BY RANGE (received)")
    await conn.execute(f"CREATE TABLE IF NOT EXISTS {table}_default "
                       f"PARTITION OF {table} DEFAULT")
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_id ON {table} (id)")
    has = await conn.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass($1) AND attname = 'record'", table)
    if has not in RECORD_TYPES:
        raise ValueError(f"{table}.record is {has}, not one of {RECORD_TYPES}")
    if has != record_type:
        log.warning("postgres sink: %s keeps its records as %s (made so); record_type %s "
                    "applies to a new table", table, has, record_type)
    await conn.execute(f"CREATE TEMP TABLE {STAGING} (record {has})")   # (the session's own)
    return has
