"""Connections given back to the pool come back usable: one handed to a request that gave up
in the same turn of the loop (its `pool_timeout`) goes back to the pool, not lost with the
request (each such loss would shrink the pool for good); one whose reading its last client
paused (back-pressure) is read again (idle, it must see the backend close it; reused, the
next answer must be read)."""

from __future__ import annotations

import asyncio

import pytest

from warden.errors import PoolExhausted
from warden.upstream.connection import UpstreamConnection
from warden.upstream.pool import ConnectionPool


def test_a_connection_handed_to_a_waiter_that_timed_out_stays_in_the_pool():
    async def scenario() -> tuple[ConnectionPool, UpstreamConnection]:
        pool = ConnectionPool("127.0.0.1", 9, max_connections=1, connect_timeout=1,
                              pool_timeout=0, keepalive_timeout=60)
        pool.open_count = 1   # (its one connection is in use)
        conn = UpstreamConnection()
        conn.reusable = True
        waiting = asyncio.ensure_future(pool.acquire())
        # The waiter's step: its timeout (0 s) is already due, queued before what follows.
        await asyncio.sleep(0)
        pool.release(conn)   # handed over: its wake comes after the timeout's cancel
        with pytest.raises(PoolExhausted):
            await waiting
        return pool, conn

    pool, conn = asyncio.run(scenario())
    assert pool.open_count == 1
    assert pool.try_acquire(0.0) is conn   # back in the pool, reusable


class Transport:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def test_a_connection_paused_by_its_last_client_is_read_again_once_released():
    pool = ConnectionPool("127.0.0.1", 9, max_connections=1, connect_timeout=1,
                          pool_timeout=1, keepalive_timeout=60)
    pool.open_count = 1
    conn = UpstreamConnection()
    transport = Transport()
    conn.transport = transport  # type: ignore[assignment]
    conn.reusable = True   # (its response complete, keep-alive)
    conn.pause_reading()   # (the last write to a slow client, as the exchange ended)
    assert transport.paused and conn.reading_paused
    pool.release(conn)
    assert not transport.paused and not conn.reading_paused
    assert pool.try_acquire(0.0) is conn
