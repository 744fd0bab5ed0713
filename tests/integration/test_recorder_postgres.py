"""The flight recorder's PostgreSQL sink against the real server (127.0.0.1:5432, database
`test`): records land by day partition through the gateway, retention drops old days, and
batches wait for a server that comes back; and against one that accepts and never answers:
the queue stays bounded, every step times out, and SIGTERM exits within its deadline.
A table of this test's own, dropped afterwards. No server is a failure, not a skip."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.harness import GatewayThread, http, serve, until, wait_until
from tests.postgres_support import DSN, sql
from warden.config.schema import PostgresSinkSpec
from warden.record.postgres import PostgresSink
from warden.record.sink import Batch

JSON = {"Content-Type": "application/json"}


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
        sink = next(s for s in gw.gateway.recorder.sinks if isinstance(s, PostgresSink))
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
        sink._cut()
        return {p["relname"] for p in parts}, old

    parts, old = asyncio.run(run())
    today = datetime.now(UTC).date()
    assert f"{table}_{old:%Y%m%d}" not in parts
    assert {f"{table}_{today:%Y%m%d}", f"{table}_{today + timedelta(days=1):%Y%m%d}",
            f"{table}_default"} <= parts


class HungServer:
    """A database that accepts connections and never answers (a real listening socket)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def close(self) -> None:
        self._server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hung():
    server = HungServer()
    yield server
    server.close()


def test_a_hung_database_bounds_the_queue_and_shutdown_has_a_deadline(hung, caplog):
    spec = PostgresSinkSpec(dsn=hung.dsn, timeout=0.2, queue_bytes="64KiB", drain_timeout=0.5)
    batch = bytearray(b'{"id":"x","type":"start","pad":"%s"}\n' % (b"x" * 989)) * 16
    assert len(batch) == 16 * 1024  # four fit in the queue

    async def run() -> float:
        sink = PostgresSink(spec)
        sink.open()
        for _ in range(40):  # 40 flushes of 16 KiB while the database hangs
            sink.submit(Batch([batch], 16))
            assert sink.queued_bytes <= 64 * 1024
            await asyncio.sleep(0.02)
        # A connection attempt timed out and is tried again.
        await until(lambda: len(hung.accepted) >= 2, what="a second connection attempt")
        assert sink.dropped > 0 and sink.written == 0
        started = time.monotonic()
        await sink.close()
        assert sink.abandoned == 16 * 4 and sink.queued_bytes == 0
        assert sink.abandoned + sink.dropped == 16 * 40
        return time.monotonic() - started

    caplog.set_level(logging.WARNING, "warden.record.postgres")
    assert asyncio.run(run()) < 1.5
    assert sum("cannot connect: no answer within 0.2s" in m for m in caplog.messages) == 1
    assert "64 records not written by the shutdown deadline" in caplog.messages[-1]


def test_sigterm_exits_while_the_database_hangs(hung, fleet, tmp_path):
    """The defaults (10 s a step, 5 s to drain): the gateway exits soon after SIGTERM, and
    says what the database did not get."""
    backends = "".join(f"  - {{name: n{i}, url: '{fleet.url(i)}'}}\n" for i in range(3))
    log_file = tmp_path / "warden.log"
    with log_file.open("w") as stderr:
        proc, base = serve(f"backends:\n{backends}recorder: {{dir: records, flush_interval: "
                           f"50ms, postgres: {{dsn: '{hung.dsn}'}}}}\n", tmp_path, stderr=stderr)
        try:
            for n in range(20):
                status, _, _ = http("POST", f"{base}/v1/completions", json.dumps(
                    {"model": "sim-model", "prompt": f"{n}", "max_tokens": 1}).encode(), JSON)
                assert status == 200
            wait_until(lambda: hung.accepted, what="a connection to the database")
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert proc.wait(timeout=20) == 0
            assert time.monotonic() - started < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_file.read_text()
    assert "40 records not written by the shutdown deadline" in text, text
    assert "Traceback" not in text


def test_batches_wait_for_a_database_that_comes_back(table):
    """Unreachable (connections hang) for a while, then reachable: the batches submitted
    meanwhile are written, not dropped (a relay in front of the real server)."""

    async def run() -> PostgresSink:
        reachable = asyncio.Event()
        attempts = []

        async def relay(reader, writer):
            attempts.append(writer)
            await reachable.wait()
            if reader.at_eof():
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = PostgresSink(PostgresSinkSpec(
            dsn=f"postgresql://postgres@127.0.0.1:{port}/test", table=table, timeout=0.3))
        sink.open()
        for n in range(3):
            sink.submit(Batch([bytearray(_record(f"late-{n}"))], 1))
        await until(lambda: len(attempts) >= 2, what="the first attempt to time out")
        assert sink.written == 0 and sink.failed == 0 and sink.queued_records == 3
        reachable.set()
        async with asyncio.timeout(10):
            while sink.written < 3:
                await asyncio.sleep(0.05)
        await sink.close()
        server.close()
        return sink

    sink = asyncio.run(run())
    assert sink.written == 3 and sink.dropped == sink.failed == sink.abandoned == 0
    assert sorted(r["id"] for r in sql(f"SELECT id FROM {table}")) == \
        ["late-0", "late-1", "late-2"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _record(rid: str) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": "start", "id": rid, "received": now}).encode() + b"\n"
