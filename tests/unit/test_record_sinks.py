"""The recorder's sinks: built from the settings by name, opened in order, handed the same
batch at each flush, closed together; the files stay the record of reference (their backlog
bounds the queue, their losses are the recorder's), whatever else is added."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from warden.config.schema import PostgresSinkSpec, RecorderSpec
from warden.record.postgres import SLICE, PostgresSink, _slices
from warden.record.recorder import Recorder
from warden.record.sink import Batch
from warden.record.sinks import SINKS, build_sinks
from warden.record.writer import FileSink


class Collecting:
    """A sink that keeps every batch, and says when it was opened and closed."""

    name = "collecting"

    def __init__(self, events: list[str]) -> None:
        self.batches: list[Batch] = []
        self.events = events
        self.done = 0
        self.lost = 0

    def open(self) -> None:
        self.events.append("open")

    def submit(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.done += batch.count

    async def close(self) -> None:
        self.events.append("close")


def test_the_settings_choose_the_sinks_by_name():
    assert list(SINKS) == ["files", "postgres"]
    [files] = build_sinks(RecorderSpec())
    assert isinstance(files, FileSink) and files.name == "files"
    files, postgres = build_sinks(RecorderSpec(postgres=PostgresSinkSpec(
        dsn="postgresql://warden@127.0.0.1/records")))
    assert isinstance(files, FileSink) and isinstance(postgres, PostgresSink)
    assert postgres.name == "postgres"


def test_a_recorder_needs_its_files():
    events: list[str] = []
    with pytest.raises(ValueError, match="one FileSink"):
        Recorder(RecorderSpec(), [Collecting(events)])


def test_every_sink_gets_the_same_batch_and_only_the_files_bound_the_queue(tmp_path):
    events: list[str] = []
    spec = RecorderSpec(dir=str(tmp_path), queue_size=4)
    files, other = FileSink(spec), Collecting(events)
    recorder = Recorder(spec, [files, other])

    async def run() -> None:
        recorder.open()
        recorder._pending.add(b'{"n":1}\n')
        recorder._pending.add(b'{"n":2}\n')
        recorder.flush()
        await recorder.close()

    asyncio.run(run())
    assert events == ["open", "close"]
    [batch] = other.batches
    assert (b"".join(batch.pieces), batch.count, batch.size) == (b'{"n":1}\n{"n":2}\n', 2, 16)
    assert recorder.written == files.done == 2 and recorder.queued == recorder.queued_bytes == 0
    other.lost = 5  # another sink's losses are its own: the files still have the records
    assert recorder.lost == 0
    files.writer.refused = 1
    assert recorder.lost == 1


def test_a_postgres_sink_never_opened_closes_at_once():
    sink = PostgresSink(PostgresSinkSpec(dsn="postgresql://warden@127.0.0.1/records"))
    asyncio.run(sink.close())
    assert sink.done == sink.lost == 0


def test_a_postgres_batch_is_sent_a_slice_a_loop_turn():
    """A flush's records (megabytes under load) go to COPY in slices, the loop serving
    between two: never the whole batch in one turn, and no executor thread."""
    data = bytearray(b"x" * 99 + b"\n") * 3000  # 300 KB
    pieces = [data[:100_000], data[100_000:]]  # a batch's chunks (record/buffer.py)

    async def main() -> list[tuple[bytes, int]]:
        turns = 0

        async def elsewhere() -> None:  # another task: counts the loop's turns
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(elsewhere())
        await asyncio.sleep(0)
        sent = [(bytes(piece), turns) async for piece in _slices(pieces)]
        task.cancel()
        return sent

    sent = asyncio.run(main())
    assert b"".join(piece for piece, _ in sent) == data
    assert all(len(piece) <= SLICE for piece, _ in sent) and len(sent) > 1
    assert all(a[1] < b[1] for a, b in itertools.pairwise(sent))
