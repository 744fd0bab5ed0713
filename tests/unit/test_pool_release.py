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


def test_a_slot_freed_for_a_waiter_is_its_not_the_next_comers():
    """A connection that is not reused frees its slot for the first waiter; a request that
    comes before that waiter wakes waits its turn (it connected too: two connections open
    where one was allowed, and the waiter lost its place)."""

    async def scenario() -> tuple[int, bool, int]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool("127.0.0.1", port, max_connections=1, connect_timeout=5,
                              pool_timeout=5, keepalive_timeout=60)
        pool.open_count = 1   # (its one connection is in use)
        in_use = UpstreamConnection()
        first = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)          # it waits
        second = asyncio.ensure_future(pool.acquire())   # (its step runs before the wake)
        pool.release(in_use)            # not reusable: its slot is the first waiter's
        conn = await first
        most = pool.open_count
        waiting = not second.done()
        pool.release(UpstreamConnection())   # (the first's, not reusable: the second's turn)
        (await second).close()
        conn.close()
        server.close()
        return most, waiting, pool.open_count

    most, second_waited, open_at_end = asyncio.run(scenario())
    assert most == 1 and second_waited and open_at_end == 1


def test_a_waiter_that_gives_up_a_slot_freed_for_it_frees_it():
    async def scenario() -> ConnectionPool:
        pool = ConnectionPool("127.0.0.1", 9, max_connections=1, connect_timeout=1,
                              pool_timeout=0, keepalive_timeout=60)
        pool.open_count = 1
        waiting = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        pool.release(UpstreamConnection())   # a slot for it, then its timeout fires
        with pytest.raises(PoolExhausted):
            await waiting
        return pool

    assert asyncio.run(scenario()).open_count == 0


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
