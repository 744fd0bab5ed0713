"""`fetch` (the gateway's own small requests) against a fake pool: a seam, no socket."""

from __future__ import annotations

import asyncio

import pytest

from warden.upstream.fetch import fetch


class FakeConnection:
    def __init__(self) -> None:
        self.sink = None

    def send(self, data: list[bytes], sink) -> None:
        self.sink = sink
        self.sent = b"".join(data)


class FakePool:
    def __init__(self) -> None:
        self.conn = FakeConnection()
        self.released = 0

    async def acquire(self) -> FakeConnection:
        return self.conn

    def release(self, conn: FakeConnection) -> None:
        self.released += 1


def test_a_cancel_that_arrives_with_the_answer_still_cancels():
    """Python 3.11's asyncio.wait_for returns the result and drops such a cancel: a watch
    loop cancelled at shutdown then ran on, and the gateway's stop never returned."""

    async def scenario() -> None:
        pool = FakePool()
        task = asyncio.get_running_loop().create_task(
            fetch(pool, "GET", "/health", b"h", timeout=10))
        while pool.conn.sink is None:
            await asyncio.sleep(0)
        pool.conn.sink.on_head(200, b"")
        pool.conn.sink.on_complete()   # the answer and the cancel in the same loop turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.released == 1

    asyncio.run(scenario())


def test_a_body_goes_as_json_with_its_length_and_the_extra_header_lines():
    async def scenario() -> bytes:
        pool = FakePool()
        task = asyncio.get_running_loop().create_task(fetch(
            pool, "POST", "/tokenize", b"h:1", timeout=10, body=b'{"prompt":"hi"}',
            headers=b"authorization: Bearer k\r\n"))
        while pool.conn.sink is None:
            await asyncio.sleep(0)
        pool.conn.sink.on_head(200, b"")
        pool.conn.sink.on_complete()
        await task
        return pool.conn.sent

    assert asyncio.run(scenario()) == (
        b"POST /tokenize HTTP/1.1\r\nhost: h:1\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: 15\r\n\r\n"
        b'{"prompt":"hi"}')
