"""A gateway's data path driven by hand, with no sockets: what the compiler's profile-guided
optimisation trains on (setup.py), and what the benchmarks in bench/ measure.

Real protocol objects (the client's HttpConnection, an UpstreamConnection, the relay, the
forwarder, the handler) are driven through fake transports: a request's bytes go in, the
backend's response comes back. `train` runs the shapes of traffic the data path serves (plain
and streamed requests, the openai SDK's headers, the recorder, keys and limits kept in memory
or leased from a store that answers in process, a prompt of ~10 KB) a few thousand times;
setup.py runs it, as a script, between the instrumented build and the final one:

    python build_support/training.py ROUNDS
"""

from __future__ import annotations

import asyncio
import json
import sys

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
                 guard: bool = True, flush_every: int = 100,
                 extra: dict | None = None) -> None:
        """`recorder`: None (off), or the response capture (none | summary | full); its
        records are rendered, and dropped every `flush_every` rounds instead of being
        written (100: a 64 KB chunk of the recorder's buffer is filled and sealed every ~50
        rounds, as in the gateway, which at 20k requests/s flushes every ~4,000 rounds and
        holds that many chunks more; the chunks' cost per record is the same). `guard`: the guard
        (validation and rules) on, as by default, or off. `extra`: more settings (API keys,
        limits, logs)."""
        self.request = request
        self.flush_every = flush_every
        self.rounds = 0
        recording = {"enabled": False} if recorder is None else {"response": recorder}
        settings = parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9",
                                                 "models": ["m"]}],
                                   "recorder": recording,
                                   "guard": {"mode": "enforce" if guard else "off"},
                                   **(extra or {})}, {})
        self.gateway = gateway = build_app(settings)
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

    def one_round(self, check: bool = False) -> None:
        """One non-streaming request, proxied and answered (`check`: it was, with the
        backend's body: else AssertionError)."""
        self.pool.release(self.upstream)
        self.client.data_received(self.request)
        self.writes.flush()
        self.upstream.data_received(RESPONSE)
        self.writes.flush()
        if check:
            answer = b"".join(self.client.transport.out)
            if not (answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(BODY)):
                raise RuntimeError(f"the request was not answered as it should be: {answer!r}")
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


# The traffic `train` runs: (request, recorder, more settings), each for the rounds asked.
KEYED = {"auth": {"mode": "required", "keys": [{"id": "bench", "value": KEY}]}}
LIMITED = {"auth": {"mode": "required", "keys": [{"id": "bench", "value": KEY, "limits": {
    "rpm": 10**9, "tpm": 10**12, "max_concurrent": 10**5}}]}}
# The same limits counted as replicas count them: leased from Redis (tenancy/leased.py), whose
# request path differs from the memory store's (leases asked for and granted, slots held).
# Its store answers in process (answer_in_process): the address is one nothing listens on.
LEASED = {**LIMITED, "rate_limits": {"store": "redis", "mode": "leased",
                                     "redis_url": "redis://127.0.0.1:9/0"}}
SSE_CHUNK = b"%x\r\n%s\r\n" % (len(SSE_EVENT), SSE_EVENT)


def answer_in_process(store) -> dict[str, int]:
    """Makes `store` (a RedisLimits) answer the leased mode's scripts in this process, as
    Redis would for a lone replica far below its limits: every lease and holding granted in
    full. It stands in at the store's one I/O (`_send`, `ping`): the build machine may have
    no Redis, and the training must not depend on one. Returns the calls answered, by
    script."""
    taken: dict[str, list[int]] = {}
    answered = {"lease": 0, "hold": 0}

    async def send(calls) -> list[object]:
        answers: list[object] = []
        for name, keys, args in calls:
            if name == "lease":   # -> got r, got t, taken r, taken t, replicas
                counter = taken.setdefault(keys[0], [0, 0])
                counter[0] += int(args[2])
                counter[1] += int(args[3])
                answers.append([args[2], args[3], counter[0], counter[1], 1])
            elif name == "hold":  # -> held now, held by others
                answers.append([args[1], 0])
            else:
                raise RuntimeError(f"the training does not answer the {name} script")
            answered[name] += 1
        return answers

    async def ping() -> None:
        pass

    store._send, store.ping = send, ping
    return answered


def lease_in_process(rig: Rig) -> tuple[dict[str, int], asyncio.Task]:
    """A leased rig's store answering in process (answer_in_process), and its background
    loop running beside it as in the gateway: the calls answered, and the loop's task (cancel
    it when done)."""
    limiter = rig.gateway.parts.limiter
    answered = answer_in_process(limiter.store)
    return answered, asyncio.create_task(limiter.run())


async def train(rounds: int) -> None:
    """Each shape of traffic `rounds` times (a stream: its chunks); RuntimeError if a
    request is not answered as it should be (a profile of error paths would train the wrong
    code)."""
    shapes = [(REQUEST, None, None), (SDK_REQUEST, None, None), (REQUEST, "summary", None),
              (REQUEST, "full", None), (KEYED_REQUEST, "summary", LIMITED),
              (KEYED_REQUEST, None, KEYED), (PROMPT_REQUEST, "summary", None)]
    for raw, recorder, extra in shapes:
        rig = Rig(raw, recorder=recorder, extra=extra)
        rig.one_round(check=True)
        for _ in range(rounds):
            rig.one_round()
    await train_leased(rounds)
    rig = Rig(recorder="summary")
    rig.start_stream()
    for _ in range(rounds * 4):
        rig.upstream.data_received(SSE_CHUNK)
        rig.writes.flush()
        if not rig.client.transport.out or SSE_EVENT not in rig.client.transport.out[-1]:
            raise RuntimeError(f"the event was not relayed: {rig.client.transport.out!r}")
        rig.client.transport.out.clear()


async def train_leased(rounds: int) -> None:
    """The keyed, limited request with its limits leased (LEASED), the background loop that
    asks the store running beside it, as in the gateway. The first and last requests are
    checked, and the store must have granted leases and slots (else requests ran on credit
    or were refused: the wrong code trained)."""
    rig = Rig(KEYED_REQUEST, recorder="summary", extra=LEASED)
    answered, refills = lease_in_process(rig)
    try:
        for n in range(rounds):
            rig.one_round(check=n == 0 or n == rounds - 1)
            if n % 64 == 0:
                await asyncio.sleep(0)   # the background loop's turn (leases, slots)
        if not (answered["lease"] and answered["hold"]):
            raise RuntimeError(f"the leased limits were not asked for: {answered}")
    finally:
        refills.cancel()
        await asyncio.gather(refills, return_exceptions=True)
        await rig.gateway.parts.limiter.close()


if __name__ == "__main__":
    asyncio.run(train(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
