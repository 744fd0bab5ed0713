"""Upstream writes held to the end of the loop's turn (upstream.batch): written together, in
order, once each; none for a connection closed in between; at once when no loop is bound."""

from __future__ import annotations

import asyncio

from warden.upstream.batch import CLOSE, WRITE_EOF, WriteBatch


class Transport:
    def __init__(self, log: list) -> None:
        self.log = log
        self.closing = False

    def write(self, data: bytes) -> None:
        self.log.append((self, data))

    def writelines(self, data: list[bytes]) -> None:
        self.log.append((self, b"".join(data)))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.log.append((self, "eof"))

    def close(self) -> None:
        self.log.append((self, "close"))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def test_a_turns_writes_leave_together_at_its_end_in_order():
    async def scenario():
        batch = WriteBatch()
        batch.bind(asyncio.get_running_loop())
        log: list = []
        one, two, gone = Transport(log), Transport(log), Transport(log)
        batch.add(one, [b"GET /a", b" 1"])
        batch.add(two, [b"GET /b"])
        batch.add(gone, [b"GET /c"])
        batch.add(one, [b"GET /d"])
        gone.closing = True  # its client left in the same turn
        assert log == []  # nothing yet: the turn is not over
        await asyncio.sleep(0)  # the end of the turn
        assert log == [(one, b"GET /a 1"), (two, b"GET /b"), (one, b"GET /d")]
        batch.add(two, [b"GET /e"])  # a later turn: a batch of its own
        await asyncio.sleep(0)
        assert log[3:] == [(two, b"GET /e")]
        await asyncio.sleep(0)
        assert len(log) == 4  # each written once

    asyncio.run(scenario())


def test_close_and_eof_keep_their_place_after_the_writes():
    """A response to a client that asked to close: its bytes, then the close (which asyncio
    does only once the bytes are out); nothing added after the close is written."""
    async def scenario():
        batch = WriteBatch(asyncio.get_running_loop())
        log: list = []
        client = Transport(log)
        batch.add(client, b"HTTP/1.1 200 OK\r\n\r\nok")
        batch.add(client, WRITE_EOF)
        batch.add(client, CLOSE)
        batch.add(client, b"late")
        await asyncio.sleep(0)
        assert log == [(client, b"HTTP/1.1 200 OK\r\n\r\nok"), (client, "eof"),
                       (client, "close")]

    asyncio.run(scenario())


def test_with_one_exchange_under_way_there_is_nothing_to_wait_for():
    async def scenario():
        in_flight: set[str] = {"one"}
        batch = WriteBatch(asyncio.get_running_loop(), in_flight)
        log: list = []
        client = Transport(log)
        batch.add(client, b"alone")
        assert log == [(client, b"alone")]  # at once
        in_flight.add("two")
        batch.add(client, b"first")
        in_flight.discard("two")
        batch.add(client, b"second")  # after a pending write: in order, at the turn's end
        assert log == [(client, b"alone")]
        await asyncio.sleep(0)
        assert log[1:] == [(client, b"first"), (client, b"second")]

    asyncio.run(scenario())


def test_unbound_it_writes_at_once():
    log: list = []
    transport = Transport(log)
    WriteBatch().add(transport, [b"GET /", b"x"])
    assert log == [(transport, b"GET /x")]


class Refusing(Transport):
    """A transport whose writes raise (as uvloop's do after its write_eof)."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("Cannot call write() after write_eof()")

    def abort(self) -> None:
        self.log.append((self, "abort"))
        self.closing = True


def test_one_transports_failure_does_not_cost_the_others_their_bytes(caplog):
    async def scenario():
        batch = WriteBatch(asyncio.get_running_loop())
        log: list = []
        first, broken, last = Transport(log), Refusing(log), Transport(log)
        batch.add(first, b"one")
        batch.add(broken, b"two")
        batch.add(broken, b"three")   # (aborted by then: skipped)
        batch.add(last, b"four")
        await asyncio.sleep(0)
        assert log == [(first, b"one"), (broken, "abort"), (last, b"four")]

    asyncio.run(scenario())
    assert "a batched write failed" in caplog.text
