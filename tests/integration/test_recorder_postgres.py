"""The flight recorder's PostgreSQL sink against the real server (127.0.0.1:5432, database
`test`): records land by day partition through the gateway, and retention drops old days.
A table of this test's own, dropped afterwards. No server is a failure, not a skip."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.harness import GatewayThread, http, wait_until
from warden.config.schema import PostgresSinkSpec
from warden.record.postgres import PostgresSink

DSN = os.environ.get("WARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
JSON = {"Content-Type": "application/json"}


def sql(query: str, *args):
    async def run():
        conn = await asyncpg.connect(DSN)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()
    return asyncio.run(run())


@pytest.fixture
def table():
    name = f"warden_test_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    yield name
    sql(f"DROP TABLE IF EXISTS {name} CASCADE")


def test_records_land_in_postgres_by_day(fleet, tmp_path, table):
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms",
                                     "postgres": {"dsn": DSN, "table": table}}})
    try:
        for n in range(5):
            status, _, _ = http("POST", f"{gw.url}/v1/completions", json.dumps(
                {"model": "sim-model", "prompt": f"to sql {n}", "max_tokens": 2}).encode(),
                {**JSON, "X-Request-Id": f"pg-{n}"})
            assert status == 200
        sink = gw.gateway.recorder.sink
        gw.call(gw.gateway.recorder.flush)
        wait_until(lambda: gw.call(lambda: sink.written) >= 10, what="10 records in postgres")
        assert gw.metric("warden_recorder_postgres_records_total", 'outcome="written"') >= 10
    finally:
        gw.stop()
    rows = sql(f"SELECT id, type, record, tableoid::regclass::text AS part FROM {table} "
               "ORDER BY id, type")
    assert [(r["id"], r["type"]) for r in rows] == [
        (f"pg-{n}", kind) for n in range(5) for kind in ("end", "start")]
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert {r["part"] for r in rows} == {f"{table}_{today}"}
    start = json.loads(next(r["record"] for r in rows if r["type"] == "start"))
    assert json.loads(start["body"])["prompt"] == "to sql 0"


def test_retention_drops_whole_old_days(table):
    async def run():
        sink = PostgresSink(PostgresSinkSpec(dsn=DSN, table=table, retention=3 * 86400))
        conn = await sink._connection()
        old = (datetime.now(UTC) - timedelta(days=10)).date()
        await conn.execute(f"CREATE TABLE {table}_{old:%Y%m%d} PARTITION OF {table} FOR VALUES "
                           f"FROM ('{old}') TO ('{old + timedelta(days=1)}')")
        await sink._prepare_days(conn)
        parts = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1", table)
        await sink._disconnect()
        return {p["relname"] for p in parts}, old

    parts, old = asyncio.run(run())
    today = datetime.now(UTC).date()
    assert f"{table}_{old:%Y%m%d}" not in parts
    assert {f"{table}_{today:%Y%m%d}", f"{table}_{today + timedelta(days=1):%Y%m%d}",
            f"{table}_default"} <= parts
