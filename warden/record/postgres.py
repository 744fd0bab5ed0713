"""An optional PostgreSQL sink for the flight recorder's records, for fleets that want SQL over
them (the files stay the embedded default and are written regardless).

Schema: `<table>` is partitioned by day on `received` (the request's arrival, UTC), with
columns `received timestamptz, id text, type text, record jsonb`; partitions are
`<table>_YYYYMMDD`, created ahead of need, plus a default partition so that an insert never
fails; retention drops whole day partitions older than `retention`.

Writing: one batch per recorder flush, with one COPY of the record lines as they are (no
parsing in Python: CSV with a quote and a delimiter that JSON text never contains raw, into a
temporary staging table) and one INSERT … SELECT that routes them to their day. On the event
loop, batches are written one at a time, in order; a failed batch is counted and logged and the
connection is reopened for the next. Loss on failure is the batch; the files still have it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from datetime import UTC, datetime, timedelta

from warden.config.recorder_schema import PostgresSinkSpec

log = logging.getLogger("warden.record.postgres")

# Control characters never appear raw in JSON text, so they can frame it for COPY.
_QUOTE, _DELIMITER = "\x01", "\x02"
_DAY = re.compile(r"_(\d{8})$")


class PostgresSink:
    def __init__(self, spec: PostgresSinkSpec):
        self.spec = spec
        self.table = spec.table
        self.written = 0
        self.failed = 0
        self._conn = None
        self._queue: asyncio.Queue[tuple[bytes | bytearray, int] | None] = asyncio.Queue()
        self._days_ready: set[str] = set()
        self._retained_on = ""

    def submit(self, lines: bytes | bytearray, count: int) -> None:
        """A flush's records: `count` JSON lines. (Read, never changed, here and by the file
        writer: the recorder starts a new buffer after each flush.)"""
        self._queue.put_nowait((lines, count))

    async def run(self) -> None:
        """Write submitted batches, in order, until `stop`."""
        while True:
            batch = await self._queue.get()
            if batch is None:
                break
            lines, count = batch
            try:
                await self._write(lines)
                self.written += count
            except Exception as e:
                self.failed += count
                log.warning("postgres sink: a batch of %d records failed (%s: %s)",
                            count, e.__class__.__name__, e)
                await self._disconnect()
        await self._disconnect()

    def stop(self) -> None:
        self._queue.put_nowait(None)

    async def _write(self, lines: bytes | bytearray) -> None:
        conn = await self._connection()
        await self._prepare_days(conn)
        async with conn.transaction():
            await conn.copy_to_table("warden_staging", source=io.BytesIO(lines),
                                     columns=["record"], format="csv", quote=_QUOTE,
                                     delimiter=_DELIMITER)
            await conn.execute(
                f"INSERT INTO {self.table} (received, id, type, record) "
                "SELECT (record->>'received')::timestamptz, record->>'id', record->>'type', "
                "record FROM warden_staging")
            await conn.execute("TRUNCATE warden_staging")

    async def _connection(self):
        if self._conn is None or self._conn.is_closed():
            import asyncpg  # an optional dependency: only a configured sink needs it

            self._conn = await asyncpg.connect(self.spec.dsn, timeout=10)
            await self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (received timestamptz NOT NULL, "
                f"id text NOT NULL, type text NOT NULL, record jsonb NOT NULL) "
                f"PARTITION BY RANGE (received)")
            await self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table}_default "
                                     f"PARTITION OF {self.table} DEFAULT")
            await self._conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_id "
                                     f"ON {self.table} (id)")
            await self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS warden_staging "
                                     "(record jsonb)")
            self._days_ready.clear()
        return self._conn

    async def _prepare_days(self, conn) -> None:
        """Today's and tomorrow's partitions exist; once a day, old ones are dropped."""
        today = datetime.now(UTC).date()
        for day in (today, today + timedelta(days=1)):
            name = day.strftime("%Y%m%d")
            if name in self._days_ready:
                continue
            # A day that the default partition already holds rows of cannot be attached:
            # those stay in the default partition (retention does not drop them).
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table}_{name} PARTITION OF {self.table} "
                    f"FOR VALUES FROM ('{day.isoformat()}') "
                    f"TO ('{(day + timedelta(days=1)).isoformat()}')")
            except Exception as e:  # see above: logged, and writing goes on
                log.warning("postgres sink: no partition for %s (%s)", day, e)
            self._days_ready.add(name)
        if self._retained_on != today.isoformat():
            await self.drop_expired(conn, time.time())
            self._retained_on = today.isoformat()

    async def drop_expired(self, conn, now: float) -> list[str]:
        """Drop day partitions that ended more than `retention` ago."""
        cutoff = datetime.fromtimestamp(now - self.spec.retention, UTC).date()
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1", self.table)
        dropped = []
        for row in rows:
            match = _DAY.search(row["relname"])
            if match is None:
                continue
            day = datetime.strptime(match.group(1), "%Y%m%d").date()
            if day + timedelta(days=1) <= cutoff:
                await conn.execute(f"DROP TABLE IF EXISTS {row['relname']}")
                dropped.append(row["relname"])
        return dropped

    async def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=5)
            except Exception:  # closing a broken connection
                conn.terminate()
