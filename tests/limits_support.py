"""For the limits' tests against Redis (tests/integration/test_limits_*.py): the machine's
Redis with a key prefix of the test's own, a private redis-server to stop and restart, a
store whose calls wait at a gate the test opens, a fake wall clock, and limiters running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from warden.config.limits_schema import RateLimitSpec
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.health import StoreHealth
from warden.tenancy.leased import LeasedLimiter
from warden.tenancy.ledger import RECHECK, window_of
from warden.tenancy.limiter import Limiter, build_limiter
from warden.tenancy.redis_store import Call, RedisLimits

REDIS = os.environ.get("WARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
T0 = 60 * 28_333_334 + 30.0    # the middle of a minute window: no test crosses into the next


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class WallClock(Clock):
    """The real one, for what must agree with Redis's own time (slots' TTLs)."""

    @property  # type: ignore[override]
    def now(self) -> float:
        return time.time()

    @now.setter
    def now(self, value: float) -> None:
        pass


@pytest.fixture(name="prefix")
def prefix_fixture() -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted after. No Redis: a failure."""
    client = redis.Redis.from_url(REDIS)
    client.ping()
    name = f"warden-test-limits-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    yield name
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def spec(prefix: str, url: str = REDIS, **fields: object) -> RateLimitSpec:
    return RateLimitSpec(store="redis", redis_url=url, key_prefix=prefix, **fields)


async def answer(limiter: Limiter, subjects: list, tokens: int, now: float) -> Ticket | Refusal:
    """What `admit` answers, awaited in the exact mode."""
    result = limiter.admit(subjects, tokens, now)
    return await result if isinstance(result, asyncio.Future) else result


@contextlib.asynccontextmanager
async def running(*limiters: Limiter) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(limiter.run()) for limiter in limiters]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for limiter in limiters:
            await limiter.close()


def limiters(prefix: str, count: int, clock: Clock, **fields: object) -> list[Limiter]:
    return [build_limiter(spec(prefix, **fields), clock=clock) for _ in range(count)]


def counter(prefix: str, subject: str, clock: Clock, field: str = "r") -> int:
    value = redis.Redis.from_url(REDIS).hget(f"{prefix}win:{window_of(clock.now)}:{subject}",
                                             field)
    return int(value or 0)


async def load(group: list, subjects: list, tokens: list[int], workers: int = 60) -> list[int]:
    """`workers` clients, each on one replica, yielding between requests, until each is
    refused for a spent window (not a burst); returns the tokens of each request admitted."""
    rng, admitted = random.Random(7), []

    async def client(n: int) -> None:
        while True:
            cost = rng.choice(tokens)
            result = await answer(group[n % len(group)], subjects, cost, group[0].clock())
            if isinstance(result, Ticket):
                admitted.append(cost)
            elif result.retry_after is None or result.retry_after > RECHECK:
                return
            await asyncio.sleep(0)

    await asyncio.gather(*(client(n) for n in range(workers)))
    for limiter in group:
        await limiter.quiet()
    return admitted


def told(caplog, what: str) -> int:
    return sum(what in record.getMessage() for record in caplog.records
               if record.name == "warden.limits")


class GatedStore:
    """The Redis store, but each batch waits until the test opens the gate."""

    def __init__(self, store: RedisLimits):
        self.store = store
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()    # a batch is at the gate

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def run(self, calls: list[Call]) -> list[list[int]]:
        self.waiting.set()
        await self.gate.wait()
        return await self.store.run(calls)


def gated_limiter(prefix: str, clock: Clock, **fields: object) -> tuple[LeasedLimiter,
                                                                          GatedStore]:
    settings = spec(prefix, **fields)
    store = GatedStore(RedisLimits(settings.redis_url, prefix, settings.timeout))
    health = StoreHealth(store="redis", mode="leased", fail_mode="open", clock=clock)
    return LeasedLimiter(settings, store=store, health=health, clock=clock), store  # type: ignore[arg-type]


class RedisServer:
    """A redis-server of the test's own, on a free port, to stop and restart mid-run."""

    def __init__(self, directory: Path):
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Returns once it accepts connections (it says so on its log)."""
        self.process = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", ""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        said = []
        for line in self.process.stdout:
            said.append(line)
            if "Ready to accept connections" in line:
                return
        raise AssertionError(f"redis-server did not start: {''.join(said)}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


@pytest.fixture(name="private_redis")
def private_redis_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
