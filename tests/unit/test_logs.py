"""The log formats, the access log's sampling and fields, and the log output's queue: a sink
that blocks costs the caller nothing, and what cannot be queued is counted."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time

import pytest

from warden.config.observe_schema import AccessLogSpec
from warden.exchange import Exchange
from warden.observe.access_log import AccessLog, access_fields, outcome
from warden.observe.log_output import LogOutput
from warden.observe.logs import JsonFormatter, TextFormatter

ACCESS_FIELDS = {"event", "request_id", "endpoint", "model", "stream", "tenant", "key_id",
                 "client_ip", "backend", "attempts", "status", "verdict", "error", "ttft_ms",
                 "prompt_tokens", "completion_tokens", "duration_ms"}


def record(msg: str = "hello %s", args: tuple = ("world",), **fields) -> logging.LogRecord:
    made = logging.LogRecord("warden.test", logging.WARNING, __file__, 1, msg, args, None)
    if fields:
        made.fields = fields
    return made


def finished(n: int = 1, *, stream: bool = True) -> Exchange:
    exchange = Exchange(b"req-%d" % n, "/v1/chat/completions", "192.0.2.1", 100.0)
    exchange.model, exchange.stream, exchange.backend = "m", stream, "b0"
    exchange.attempts = ("b0",)
    exchange.status, exchange.verdict, exchange.ttft = 200, "complete", 0.0123
    exchange.usage = {"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23}
    exchange.ended_at = 100.5
    return exchange


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_json_line_has_the_stable_fields_and_the_structured_ones():
    line = json.loads(JsonFormatter().format(record(event="start", version="1", level="no")))
    assert set(line) == {"ts", "level", "logger", "msg", "event", "version"}
    assert line["level"] == "WARNING"  # (a field never overwrites a stable one)
    assert line["msg"] == "hello world" and line["logger"] == "warden.test"
    assert line["ts"].endswith("Z") and line["ts"][10] == "T" and len(line["ts"]) == 24


def test_a_json_line_carries_the_exception():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = record()
        made.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(made))
    assert "ValueError: boom" in line["exc"] and "\n" not in JsonFormatter().format(made)


def test_a_text_line_puts_the_fields_after_the_message():
    text = TextFormatter().format(record(event="access", model="a b", tenant=None, status=200))
    assert text.endswith('warden.test: hello world event=access model="a b" tenant=- '
                         "status=200")


def test_a_clients_newline_or_equals_sign_cannot_forge_a_line_or_a_field():
    forged = "x\n2026-01-01 00:00:00,000\tERROR\twarden.admin: key deleted"
    text = TextFormatter().format(record(event="access", model=forged, key_id="a=b"))
    assert "\n" not in text
    assert text.endswith(' model="x\\n2026-01-01 00:00:00,000\\tERROR\\twarden.admin: key '
                         'deleted" key_id="a=b"')


def test_access_lines_are_sampled_evenly_by_counting():
    lines = Lines()
    logger = logging.getLogger("warden.test-access")
    logger.addHandler(lines)
    logger.propagate = False
    try:
        access = AccessLog(AccessLogSpec(enabled=True, sample=0.5), logger)
        for n in range(1000):
            access.ended(finished(n))
        assert len(lines.records) == 500
        assert [r.fields["request_id"] for r in lines.records[:2]] == ["req-1", "req-3"]
        access.use(AccessLogSpec(enabled=True, sample=0.01))  # (a reload)
        for n in range(1000):
            access.ended(finished(n))
        assert len(lines.records) == 510
        access.use(AccessLogSpec(enabled=False, sample=1.0))  # turned off by a reload
        for n in range(100):
            access.ended(finished(n))
        assert len(lines.records) == 510 and access.failures == 0
    finally:
        logger.removeHandler(lines)


def test_an_access_line_has_every_field_whatever_the_level():
    lines = Lines()
    logger = logging.getLogger("warden.test-access-level")
    logger.addHandler(lines)
    logger.setLevel(logging.ERROR)  # (an INFO line still goes: the handlers decide)
    logger.propagate = False
    try:
        AccessLog(AccessLogSpec(enabled=True), logger).ended(finished(1))
    finally:
        logger.removeHandler(lines)
    fields = lines.records[0].fields
    assert set(fields) == ACCESS_FIELDS
    assert fields["ttft_ms"] == 12.3 and fields["duration_ms"] == 500.0
    assert (fields["prompt_tokens"], fields["completion_tokens"]) == (7, 16)
    assert (fields["backend"], fields["status"], fields["verdict"]) == ("b0", 200, "complete")


def test_a_plain_response_is_read_from_its_kept_body():
    exchange = finished(stream=False)
    exchange.usage = None
    exchange.captured = [b'{"choices":[{"finish_reason":"length"}],"usage":',
                         b'{"prompt_tokens":3,"completion_tokens":4}}']
    assert outcome(exchange) == ({"prompt_tokens": 3, "completion_tokens": 4}, ["length"])
    exchange = finished(stream=False)  # (a body is parsed once per exchange: another one)
    exchange.usage = None
    exchange.captured = [b"not json"]
    assert outcome(exchange) == (None, [])
    assert access_fields(exchange)["prompt_tokens"] is None


def test_a_line_that_cannot_be_made_is_counted_not_raised():
    class Broken(logging.Logger):
        def handle(self, record: logging.LogRecord) -> None:
            raise RuntimeError("what a bug would do")

    access = AccessLog(AccessLogSpec(enabled=True), Broken("warden.test-broken"))
    access.ended(finished())
    assert access.failures == 1


@pytest.fixture
def pipe():
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):  # (a test may have closed it)
            os.close(fd)


def test_a_blocked_log_sink_costs_the_caller_nothing_and_drops_are_counted(pipe):
    read, write = pipe
    os.set_blocking(write, False)
    with contextlib.suppress(BlockingIOError):  # the pipe full: nobody reads it
        while True:
            os.write(write, b"." * 65536)
    os.set_blocking(write, True)
    output = LogOutput(JsonFormatter(), queue_size=100, fd=write)
    output.install("INFO")
    log = logging.getLogger("warden.test-blocked")
    try:
        started = time.monotonic()
        for n in range(5000):
            log.info("line %d %s", n, "x" * 200)
        assert time.monotonic() - started < 2.0  # (it never waited for the pipe)
        assert output.dropped >= 4800
        assert output.dropped + len(output.lines) <= 5000
        assert not output.close(timeout=0.2)  # the writer is stuck: said so, in time
        assert output.handler in logging.getLogger().handlers  # (still dropping, not blocking)
        log.info("after the close")
        # Someone reads the pipe at last: the writer catches up and stops.
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: _drain(read, got), daemon=True)
        reader.start()
        assert output.close(timeout=10.0)
        os.close(write)  # (the reader sees the end)
        reader.join(10)
        assert not reader.is_alive()
        assert b'"msg":"line 0 x' in b"".join(got)  # (what it had queued, it wrote)
    finally:
        logging.getLogger().removeHandler(output.handler)


def _drain(fd: int, into: list[bytes]) -> None:
    while data := os.read(fd, 65536):
        into.append(data)


def test_a_closed_output_writes_what_was_queued_and_logs_as_before(pipe):
    read, write = pipe
    before = list(logging.getLogger().handlers)
    output = LogOutput(TextFormatter(), queue_size=100, fd=write)
    output.install("INFO")
    logging.getLogger("warden.test-close").info("one %s", "line")
    assert output.close(timeout=5.0)
    assert logging.getLogger().handlers == before
    assert os.read(read, 4096).decode().endswith("INFO warden.test-close: one line\n")
