"""Keys kept in PostgreSQL (auth.store), for fleets of gateways: made, listed, revoked and
rotated through the admin API, held in memory by every gateway (tenancy.client_keys), which
the data path reads without ever waiting on the database.

How every gateway stays current:
- at start and at every reconnect: LISTEN on the table's channel first, then read every live
  key (so that no change can fall between the two);
- while connected, each change is applied as it is notified (the table's trigger:
  tenancy.key_table): a revoke at once, from the notification alone; a new or rotated key
  once its row is read back (one query): milliseconds, everywhere. The gateway that makes a
  change applies it itself before answering;
- every `refresh`: the ids and row versions of the live keys are compared with those held,
  and what differs is read again (a safety net; it also finds a silent database).

The database down (unreachable, or silent past `timeout`): the gateway keeps serving with the
keys it holds; changes are refused (503) until it is back. The log says so (warden/backoff.py)
at each outage's start, then once a minute, then when it is back. It reconnects after a pause
that doubles from 0.5 s up to 30 s, and reads every key again. Until the first read, the
stored keys are refused (the config's work) and `/ready` says the gateway is unavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from warden.backoff import Backoff, Outage
from warden.config.auth_schema import KeyStoreSpec, StoredKeySpec
from warden.errors import KeyStoreUnavailable, error_text
from warden.tenancy import key_table
from warden.tenancy.client_keys import ClientKeys, StoredKey
from warden.tenancy.keys import new_key

log = logging.getLogger("warden.keys")

RETRY_FIRST, RETRY_LAST = 0.5, 30.0   # the pause before reconnecting: doubled, up to
T = TypeVar("T")


class KeyStore:
    def __init__(self, spec: KeyStoreSpec, keys: ClientKeys):
        self.spec = spec
        self.keys = keys
        self.schema = spec.schema_name
        self.up = False
        self.loaded = False                    # the live keys were read at least once
        self.error: str | None = None
        self._outage = Outage(tell_every_start=True)   # down since: wall clock
        self.synced_at: float | None = None    # wall clock: the last full read or compare
        self.notified = 0                      # changes notified
        self.out_of_step = 0                   # keys a compare found changed, unnotified
        self.failures = 0                      # failed connects and statements
        self._conn: Any = None
        self._query_lock = asyncio.Lock()      # one statement at a time on the connection
        self._wake = asyncio.Event()
        self._to_read: set[str] = set()        # notified ids whose rows are to be read
        self._backoff = Backoff(RETRY_FIRST, RETRY_LAST)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """One try (bounded by `timeout`): a database that is down does not keep the gateway
        down."""
        try:
            await self._connect()
        except Exception as e:
            self._down(e)

    async def run(self) -> None:
        """Apply notified changes, compare every `refresh`, reconnect when cut (until
        cancelled)."""
        next_compare = time.monotonic() + self.spec.refresh
        while True:
            if not self.connected:
                await asyncio.sleep(self._backoff.delay)
                self._backoff.longer()
                try:
                    await self._connect()
                except Exception as e:
                    self._down(e)
                next_compare = time.monotonic() + self.spec.refresh
                continue
            try:
                async with asyncio.timeout(max(0.0, next_compare - time.monotonic())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self._to_read:
                    await self._read_notified()
                if time.monotonic() >= next_compare:
                    await self._compare()
                    next_compare = time.monotonic() + self.spec.refresh
            except Exception as e:  # (already told, unless the server refused a read)
                if self.down_since is None:
                    self._down(e.__cause__ or e)
                self._cut()

    async def close(self) -> None:
        """After `run` is cancelled: a clean goodbye within a second, else cut (a shutdown
        does not wait on the database)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(min(self.spec.timeout, 1.0)):
                await conn.close()
        except Exception:
            conn.terminate()

    @property
    def down_since(self) -> float | None:
        """Wall clock (None: up, or not tried yet)."""
        return self._outage.since

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def state(self) -> dict:
        """What `/ready` says of the store (open to anyone who reaches the port: counts, no
        key ids or tenants; `GET /admin/keys` names each key left out, and why)."""
        return {"store": "postgresql", "schema": self.schema, "up": self.up,
                "loaded": self.loaded, "error": self.error, "down_since": self.down_since,
                "synced_at": self.synced_at, "keys": len(self.keys.stored),
                "left_out": len(self.keys.left_out), "failures": self.failures,
                "notified": self.notified, "out_of_step": self.out_of_step}

    # -- changes, through the admin API -------------------------------------------------------

    async def create(self, spec: StoredKeySpec) -> tuple[str, StoredKey] | None:
        """A new key (shown once: only its hash is kept) and its row; None: the id is taken."""
        key = new_key()
        digest = hashlib.sha256(key.encode()).digest()
        row = await self._query(lambda conn: key_table.insert(conn, self.schema, spec, digest))
        if row is None:
            return None
        self.keys.put(row)
        return key, row

    async def revoke(self, key_id: str) -> StoredKey | None:
        row = await self._query(lambda conn: key_table.revoke(conn, self.schema, key_id))
        if row is not None:
            self.keys.drop(key_id)
        return row

    async def rotate(self, key_id: str) -> tuple[str, StoredKey] | None:
        """A new key for `key_id` (same id and grants); the old key is refused from now."""
        key = new_key()
        digest = hashlib.sha256(key.encode()).digest()
        row = await self._query(lambda conn: key_table.rotate(conn, self.schema, key_id, digest))
        if row is None:
            return None
        self.keys.put(row)
        return key, row

    async def every(self) -> list[StoredKey]:
        return await self._query(lambda conn: key_table.every(conn, self.schema))

    async def one(self, key_id: str) -> StoredKey | None:
        found = await self._query(lambda conn: key_table.some(conn, self.schema, [key_id]))
        return found.get(key_id)

    # -- inside -------------------------------------------------------------------------------

    async def _connect(self) -> None:
        import asyncpg  # an optional dependency: only a configured store needs it

        timeout = self.spec.timeout
        conn = await asyncpg.connect(self.spec.url, timeout=timeout, command_timeout=timeout)
        self._to_read.clear()  # (the full read below covers what they were)
        try:
            async with asyncio.timeout(timeout):
                await key_table.prepare(conn, self.schema)
                await conn.add_listener(key_table.channel(self.schema), self._notified)
                keys = await key_table.live(conn, self.schema)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.keys.replace_stored(keys)
        self.synced_at = time.time()
        lasted = self._outage.ended(time.time())
        if lasted is not None:
            log.warning("key store: PostgreSQL is back after %.0fs; %d keys read again", lasted,
                        len(keys))
        elif not self.loaded:
            log.info("key store: %d keys read from %s.api_keys", len(keys), self.schema)
        self.up, self.loaded, self.error = True, True, None
        self._backoff.reset()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """`-ID`: refused at once. `+ID` (and `-ID` too, so that a read already under way
        cannot bring it back): its row is read next."""
        self.notified += 1
        sign, key_id = payload[:1], payload[1:]
        if sign == "-":
            self.keys.drop(key_id)
        self._to_read.add(key_id)
        self._wake.set()

    def _lost(self, conn: Any) -> None:
        if conn is self._conn:
            self._conn = None
            self._down(ConnectionError("the connection was lost"))
            self._wake.set()

    async def _read_notified(self) -> None:
        ids, self._to_read = sorted(self._to_read), set()
        try:
            found = await self._query(lambda conn: key_table.some(conn, self.schema, ids))
        except BaseException:
            self._to_read.update(ids)
            raise
        for key_id in ids:
            row = found.get(key_id)
            if row is None or row.revoked is not None:
                self.keys.drop(key_id)
            else:
                self.keys.put(row)

    async def _compare(self) -> None:
        async def work(conn: Any) -> tuple[dict[str, str], dict[str, StoredKey]]:
            current = await key_table.versions(conn, self.schema)
            held = self.keys.stored
            stale = [i for i, version in current.items()
                     if i not in held or held[i].version != version]
            return current, (await key_table.some(conn, self.schema, stale) if stale else {})

        current, rows = await self._query(work)
        gone = [key_id for key_id in self.keys.stored if key_id not in current]
        for key_id in gone:
            self.keys.drop(key_id)
        for row in rows.values():
            if row.revoked is None:
                self.keys.put(row)
        if gone or rows:
            self.out_of_step += len(gone) + len(rows)
            log.warning("key store: %d keys had changed without a notification; read again",
                        len(gone) + len(rows))
        self.synced_at = time.time()

    async def _query(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work` on the connection, alone and within `timeout`. Raises KeyStoreUnavailable
        when the database cannot be reached (or fails the statement)."""
        async with self._query_lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                raise KeyStoreUnavailable(f"the key store (PostgreSQL) cannot be reached "
                                          f"({self.error or 'not connected'}); retrying")
            try:
                async with asyncio.timeout(self.spec.timeout):
                    return await work(conn)
            except Exception as e:
                if _refused_by_server(e):  # (the connection is fine: the statement was not)
                    raise KeyStoreUnavailable(f"the key store (PostgreSQL) refused it: "
                                              f"{error_text(e, self.spec.timeout)}") from e
                self._down(e)
                self._cut()
                raise KeyStoreUnavailable(f"the key store (PostgreSQL) cannot be reached "
                                          f"({self.error}); retrying") from e

    def _down(self, error: BaseException) -> None:
        self.failures += 1
        self.error = error_text(error, self.spec.timeout)
        now = time.time()
        outage = self._outage
        if outage.since is None:
            self.up = False
            if outage.began(now):  # (always: each outage's start is told)
                log.error("key store: PostgreSQL cannot be used (%s); %s; retrying", self.error,
                          f"serving with the {len(self.keys.stored)} stored keys held"
                          if self.loaded else "stored keys are refused until they can be read "
                          "(the config's keys work)")
        elif outage.still(now) is not None:
            log.error("key store: PostgreSQL still cannot be used, since %.0fs (%s)",
                      now - outage.since, self.error)

    def _cut(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()


def _refused_by_server(error: BaseException) -> bool:
    """An error the server answered with (the connection is fine), not a lost one."""
    import asyncpg

    return isinstance(error, asyncpg.PostgresError)



