"""An optional PostgreSQL sink (a `Sink`: sink.py) for the flight recorder's records, for
fleets that want SQL over them (the files stay the embedded default and are written
regardless).

Schema: `<table>` is partitioned by day on `received` (the request's arrival, UTC), with
columns `received timestamptz, id text, type text, record jsonb`; partitions are
`<table>_YYYYMMDD`, created ahead of need, plus a default partition so that an insert never
fails; retention drops whole day partitions older than `retention`.

Writing: one batch per recorder flush, with one COPY of the record lines as they are (no
parsing in Python: CSV with a quote and a delimiter that JSON text never contains raw, into a
temporary staging table) and one INSERT … SELECT that routes them to their day. On the event
loop, batches are written one at a time, in order.

Faults (the files still have every record; what the sink loses is counted by outcome):
- Every step (connecting, the day partitions and retention, a batch's COPY and INSERT) gives
  up after `timeout`: a database that accepts and never answers holds nothing for long.
- The database cannot be reached: the batch stays queued and the connection is tried again
  after a pause that doubles up to 30 s. A batch whose writing fails is dropped (`failed`):
  retried, a batch the database refuses would block every later one.
- The queue is bounded in records and bytes (`queue_size`, `queue_bytes`; a batch alone is
  always taken): beyond, batches are dropped (`queue_full`), so memory stays bounded however
  long the database is away.
- `close` gives the queue `drain_timeout`; what is still queued then is dropped (`shutdown`)
  and logged, and the connection is cut: a shutdown never waits on the database.
- The log tells of a failure once, then at most once a minute, and when it ends (trouble.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from warden.backoff import Backoff
from warden.config.recorder_schema import PostgresSinkSpec
from warden.record.sink import Batch
from warden.record.trouble import Trouble, reason

log = logging.getLogger("warden.record.postgres")

# Control characters never appear raw in JSON text, so they can frame it for COPY.
_QUOTE, _DELIMITER = "\x01", "\x02"
_DAY = re.compile(r"_(\d{8})$")
# The most bytes of a batch sent in one turn of the event loop: a batch is a flush's records
# (megabytes under load); sent whole, or read from a file object (asyncpg reads those in the
# default executor's thread, 512 KB a time, which then contends for the GIL), it held the
# loop for milliseconds.
SLICE = 64 * 1024
# The pause before connecting again: from the first, doubled up to the last.
_RETRY_FIRST, _RETRY_LAST = 0.5, 30.0


class Unreachable(Exception):
    """The database could not be connected to (the batch is not at fault)."""


class PostgresSink:
    name = "postgres"

    def __init__(self, spec: PostgresSinkSpec):
        self.spec = spec
        self.table = spec.table
        # Records, by outcome: written, or dropped because their batch failed, the queue was
        # full, or the shutdown deadline came first.
        self.written = 0
        self.failed = 0
        self.dropped = 0
        self.abandoned = 0
        self.queued_records = 0
        self.queued_bytes = 0
        self._queue: deque[Batch] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._retry = Backoff(_RETRY_FIRST, _RETRY_LAST)
        self._conn = None
        self._days_ready: set[str] = set()
        self._retained_on = ""
        self._trouble = Trouble(log, "postgres sink")
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> int:
        return self.written + self.lost

    @property
    def lost(self) -> int:
        return self.failed + self.dropped + self.abandoned

    def open(self) -> None:
        """From the running loop: start writing (the connection is made by the first batch)."""
        self._task = asyncio.get_running_loop().create_task(self.run())

    def submit(self, batch: Batch) -> None:
        """A flush's records. (Read, never changed, here and by the file writer: the recorder
        starts a new buffer after each flush.)"""
        count = batch.count
        if self._queue and (self.queued_records + count > self.spec.queue_size
                            or self.queued_bytes + batch.size > self.spec.queue_bytes):
            self.dropped += count
            return
        self._queue.append(batch)
        self.queued_records += count
        self.queued_bytes += batch.size
        self._wake.set()

    async def run(self) -> None:
        """Write submitted batches, in order, until `close`."""
        while self._queue or not self._stopping:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[0]
            count = batch.count
            try:
                await self._write(batch.pieces)
            except Unreachable as e:  # the batch waits; the database gets a pause
                self._trouble.failing(str(e), 0)
                await self._pause()
                continue
            except Exception as e:
                self._dequeue()
                self.failed += count
                self._trouble.failing(self._reason(e), count)
                self._cut()
                continue
            self._dequeue()
            self.written += count
            self._retry.reset()
            self._trouble.working()

    async def close(self) -> None:
        """Stop writing: what is queued gets `drain_timeout` to be written; the rest is
        dropped and logged."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is not None:
            await self._drain(task)
        if self.queued_records:
            self.abandoned += self.queued_records
            log.warning("postgres sink: %d records not written by the shutdown deadline "
                        "(recorder.postgres.drain_timeout, %gs); the record files have them",
                        self.queued_records, self.spec.drain_timeout)
            self._queue.clear()
            self.queued_records = self.queued_bytes = 0
        self._cut()

    async def _drain(self, task: asyncio.Task[None]) -> None:
        """`task` (the one running `run`) ends within `drain_timeout`, or is cancelled."""
        try:
            async with asyncio.timeout(self.spec.drain_timeout):
                await asyncio.shield(task)
                await self._say_goodbye()
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _say_goodbye(self) -> None:
        """A clean close (the server logs no broken connection), within the deadline."""
        if self._conn is not None and not self._conn.is_closed():
            conn, self._conn = self._conn, None
            try:
                await conn.close()
            except Exception:
                conn.terminate()

    def _dequeue(self) -> None:
        batch = self._queue.popleft()
        self.queued_records -= batch.count
        self.queued_bytes -= batch.size

    async def _pause(self) -> None:
        """Before connecting again (a shutdown ends it early)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._retry.delay):
                while not self._stopping:
                    self._wake.clear()
                    await self._wake.wait()
        self._retry.longer()

    async def _write(self, pieces: list[bytes]) -> None:
        conn = await self._connection()
        async with asyncio.timeout(self.spec.timeout):
            await self._prepare_days(conn)
        async with asyncio.timeout(self.spec.timeout), conn.transaction():
            await conn.copy_to_table("warden_staging", source=_slices(pieces),
                                     columns=["record"], format="csv", quote=_QUOTE,
                                     delimiter=_DELIMITER)
            await conn.execute(
                f"INSERT INTO {self.table} (received, id, type, record) "
                "SELECT (record->>'received')::timestamptz, record->>'id', record->>'type', "
                "record FROM warden_staging")
            await conn.execute("TRUNCATE warden_staging")

    async def _connection(self):
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        try:
            async with asyncio.timeout(self.spec.timeout):
                self._conn = await self._connect()
        except Exception as e:
            self._cut()
            raise Unreachable(f"cannot connect: {self._reason(e)}") from e
        self._days_ready.clear()
        return self._conn

    def _reason(self, error: Exception) -> str:
        if isinstance(error, TimeoutError):
            return f"no answer within {self.spec.timeout:g}s"
        return reason(error)

    async def _connect(self):
        import asyncpg  # an optional dependency: only a configured sink needs it

        timeout = self.spec.timeout
        conn = await asyncpg.connect(self.spec.dsn, timeout=timeout, command_timeout=timeout)
        self._conn = conn  # cut if what follows times out
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (received timestamptz NOT NULL, "
            f"id text NOT NULL, type text NOT NULL, record jsonb NOT NULL) "
            f"PARTITION BY RANGE (received)")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table}_default "
                           f"PARTITION OF {self.table} DEFAULT")
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_id ON {self.table} (id)")
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS warden_staging (record jsonb)")
        return conn

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

    def _cut(self) -> None:
        """Drop the connection at once (after a failure, or at shutdown: nothing to wait
        for)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.terminate()


async def _slices(pieces: list[bytes]) -> AsyncIterator[memoryview]:
    """A batch's pieces in slices of at most `SLICE` bytes, one per turn of the loop (asyncpg
    awaits each; COPY's data messages need not end at a row's end)."""
    for lines in pieces:
        view = memoryview(lines)
        for start in range(0, len(view), SLICE):
            yield view[start:start + SLICE]
            await asyncio.sleep(0)
