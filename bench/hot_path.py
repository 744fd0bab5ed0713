"""Pure-Python cost of the gateway's data path, per request, with no sockets.

Real protocol objects (client HttpConnection, UpstreamConnection, relay, forwarder, handler)
are driven through fake transports: a request's bytes go in, the upstream's response bytes
come back, and the time per round is the interpreter's share of a proxied request (the socket
syscalls, which every proxy pays, are excluded). Run:

    python -m bench.hot_path
"""

from __future__ import annotations

import asyncio
import json
import time

import uvloop

from warden import compiled
from warden.app import build_app
from warden.edge.server import HttpConnection, HttpServer, ServerLimits
from warden.settings import parse_settings
from warden.upstream.connection import UpstreamConnection


def request(body: bytes) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


REQUEST = request(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
# The same request as the openai Python SDK sends it: 17 header fields, not wrk's 3.
SDK_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw:8000\r\nAccept-Encoding: gzip, deflate"
    b"\r\nConnection: keep-alive\r\nAccept: application/json\r\nContent-Type: application/json"
    b"\r\nUser-Agent: OpenAI/Python 1.99.1\r\nX-Stainless-Lang: python\r\n"
    b"X-Stainless-Package-Version: 1.99.1\r\nX-Stainless-OS: Linux\r\nX-Stainless-Arch: x64"
    b"\r\nX-Stainless-Runtime: CPython\r\nX-Stainless-Runtime-Version: 3.11.7\r\n"
    b"Authorization: Bearer sk-unused\r\nX-Stainless-Async: false\r\n"
    b"x-stainless-retry-count: 0\r\nx-stainless-read-timeout: 600\r\n"
    b"Content-Length: 57\r\n\r\n"
    b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
KEY = "wk-bench-key-000000000000000000001"
# The plain request with a key (auth and limits' rigs).
KEYED_REQUEST = REQUEST.replace(b"Host: gw\r\n", b"Host: gw\r\nAuthorization: Bearer %s\r\n"
                                % KEY.encode())
# A chat request whose prompt is ~10 KB of English prose (a system prompt, a conversation of
# three turns; newlines and quotes escaped as JSON escapes them): what the guard's byte scans
# and the recorder's body cost on a prompt of a realistic size, where the 57-byte body above
# shows only their fixed costs.
PARAGRAPH = (
    "When the service was first deployed, nobody expected the queue to grow this quickly. "
    "The team had planned for a few hundred requests an hour; by the end of the second week "
    "it was closer to forty thousand.\nSeveral engineers suggested \"just adding more "
    "machines\", but the bottleneck was the database, not the web tier. Reads could be "
    "cached. Writes could not, at least not without giving up the ordering guarantees the "
    "billing system depended on.\nSo they measured first: which queries were slow, which "
    "tables were hot, and how the latency of each step changed with load. ")
PROMPT = {"model": "m", "max_tokens": 256, "messages": [
    {"role": "system", "content": "You are a careful technical writer. " + PARAGRAPH * 2},
    {"role": "user", "content": "Summarise this incident report:\n" + PARAGRAPH * 8},
    {"role": "assistant", "content": PARAGRAPH * 2},
    {"role": "user", "content": "Now list three follow-up actions. " + PARAGRAPH * 4}]}
PROMPT_REQUEST = request(json.dumps(PROMPT, separators=(",", ":")).encode())
STREAM_REQUEST = request(b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}')
BODY = b'{"id":"x","object":"chat.completion","choices":[]}'
RESPONSE = (b"HTTP/1.1 200 OK\r\ndate: Sat, 21 Nov 2026 20:00:00 GMT\r\nserver: uvicorn\r\n"
            b"content-length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (len(BODY), BODY))
SSE_EVENT = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
             b'"choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,'
             b'"finish_reason":null,"token_ids":null}]}\n\n')


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, parts) -> None:
        self.out.append(b"".join(parts))

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Rig:
    """A gateway with one backend whose one upstream connection is a fake transport, and one
    client connection: the real protocol objects, driven by hand."""

    def __init__(self, request: bytes = REQUEST, recorder: str | None = None,
                 guard: bool = True, flush_every: int = 100, extra: dict | None = None,
                 observe: float = 0.0) -> None:
        """`recorder`: None (off), or the response capture (none | summary | full); its
        records are rendered, and dropped every `flush_every` rounds instead of being
        written (100: a 64 KB chunk of the recorder's buffer is filled and sealed every ~50
        rounds, as in the gateway, which at 20k requests/s flushes every ~4,000 rounds and
        holds that many chunks more; the chunks' cost per record is the same). `guard`: the guard
        (validation and rules) on, as by default, or off. `extra`: more settings (API keys,
        limits). `observe`: JSON logs, and the access log and traces on at this sample rate
        (0: off), see `observing`."""
        self.request = request
        self.flush_every = flush_every
        self.rounds = 0
        recording = {"enabled": False} if recorder is None else {"response": recorder}
        settings = parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9",
                                                 "models": ["m"]}],
                                   "recorder": recording,
                                   "guard": {"mode": "enforce" if guard else "off"},
                                   **observing(observe), **(extra or {})}, {})
        self.gateway = gateway = build_app(settings)
        if observe:
            observe_in_process(gateway)
        self.recorder = gateway.recorder
        gateway.forwarder.bind(asyncio.get_running_loop())
        # Writes wait for the end of the loop's turn (upstream.batch); here the rig ends it.
        self.writes = gateway.forwarder.writes
        server = HttpServer(gateway.handler, ServerLimits(), writes=self.writes)
        self.client = HttpConnection(server)
        self.client.connection_made(FakeTransport())
        self.upstream = UpstreamConnection()
        self.upstream.connection_made(FakeTransport())
        self.pool = next(iter(gateway.backends)).pool
        self.pool.open_count = 1

    def one_round(self) -> None:
        """One non-streaming request, proxied and answered."""
        self.pool.release(self.upstream)
        self.client.data_received(self.request)
        self.writes.flush()
        self.upstream.data_received(RESPONSE)
        self.writes.flush()
        self.client.transport.out.clear()
        self.upstream.transport.out.clear()
        self.rounds += 1
        if self.recorder is not None and self.rounds % self.flush_every == 0:
            # What a flush hands the writer, dropped (the writer frees it on its own thread).
            self.recorder._pending.take()

    def start_stream(self) -> None:
        """A streaming request, proxied, with the event stream's head answered."""
        self.pool.release(self.upstream)
        self.client.data_received(STREAM_REQUEST)
        self.writes.flush()
        self.upstream.data_received(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; "
                                    b"charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n")


def observing(sample: float) -> dict:
    """The settings of logs and traces at `sample` (0: as shipped, off)."""
    if not sample:
        return {}
    return {"logging": {"format": "json", "access_log": {"enabled": True, "sample": sample}},
            "tracing": {"enabled": True, "sample": sample}}


def observe_in_process(gateway) -> None:
    """Logs and traces whose every cost stays in this process, and is counted the same on
    every run (nothing here depends on time): the access lines are formatted and written to
    /dev/null as the log output's writer does, every 64 lines, on the thread that queues the
    64th (the writer's own thread, which looks every 50 ms, is told to wait beyond the run);
    the spans are encoded as the OTLP exporter encodes them (protobuf), in batches of 64 (the
    gateway sends up to 128), and dropped (the HTTP post to a collector is not counted)."""
    import os
    from collections import deque

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import SpanProcessor

    from warden.observe.log_output import LogOutput
    from warden.observe.logs import JsonFormatter

    class Batches(SpanProcessor):
        def __init__(self) -> None:
            self.batch: list = []

        def on_end(self, span) -> None:
            self.batch.append(span)
            if len(self.batch) == 64:
                encode_spans(self.batch).SerializePartialToString()
                self.batch = []

    output = LogOutput(JsonFormatter(), 10_000, fd=os.open(os.devnull, os.O_WRONLY),
                       interval=1e6)
    output.install("INFO")

    class Written(deque):
        def append(self, record) -> None:
            super().append(record)
            if len(self) == 64:
                output.write_queued()

    output.lines = output.handler.lines = Written()  # type: ignore[assignment]
    gateway.parts.tracing.sink.processor = Batches()


async def measure(rounds: int) -> None:
    rig = Rig()
    rig.pool.release(rig.upstream)
    rig.client.data_received(REQUEST)
    rig.writes.flush()
    assert rig.upstream.transport.out, "the request was not written upstream"
    rig.upstream.data_received(RESPONSE)
    rig.writes.flush()
    assert rig.client.transport.out[-1].endswith(BODY), rig.client.transport.out[-1]
    for _ in range(1000):
        rig.one_round()
    per_request = min(_timed(rig.one_round, rounds) for _ in range(5))

    # One SSE chunk relayed and observed (the per-chunk cost of a stream).
    chunk = b"%x\r\n%s\r\n" % (len(SSE_EVENT), SSE_EVENT)
    rig.start_stream()

    def one_chunk() -> None:
        rig.upstream.data_received(chunk)
        rig.writes.flush()
        rig.client.transport.out.clear()

    per_chunk = min(_timed(one_chunk, rounds) for _ in range(5))

    # The same request recorded in full, the records handed over every 4,000 requests.
    recording = Rig(recorder="full", flush_every=4000)
    for _ in range(8000):
        recording.one_round()
    per_recorded = min(_timed(recording.one_round, rounds) for _ in range(5))
    print(f"data path ({compiled.describe()}), no syscalls: {per_request:.1f} µs per "
          f"non-streaming request ({per_recorded:.1f} recorded in full), {per_chunk:.2f} µs "
          f"per relayed SSE chunk")


def _timed(step, rounds: int) -> float:
    """µs per call of `step`, over `rounds` calls."""
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - start) / rounds * 1e6


if __name__ == "__main__":
    uvloop.run(measure(20_000))
