"""Real queueing: an engine full to its queue answers 503 and Warden passes that on as it came
(without retrying it elsewhere: it was sent); load-aware routing sees the queue in the engine's
/metrics and sends new requests to the idle engine instead."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
from http.client import HTTPConnection, HTTPException

import pytest

from tests.harness import GatewayThread, http, wait_until
from tests.real_vllm.engines import Engine, complete

# One sequence at a time and one more queued (vLLM counts both against the queue's limit):
# a third request is refused with 503.
FLAGS = ("--max-num-seqs", "1", "--max-num-queued-reqs", "2")
LONG = {"prompt": "Once", "max_tokens": 480, "ignore_eos": True, "stream": True}


class Backlog:
    """Keeps an engine full: two long requests sent straight to it, each sent again as soon
    as it ends (a tiny model decodes ~150 tokens/s here: one lasts ~3 s), until `release`
    closes them (vLLM then aborts them)."""

    def __init__(self, engine: Engine, slots: int = 2):
        self._url = urllib.parse.urlsplit(engine.url)
        self._body = json.dumps({"model": engine.model, **LONG})
        self._open: set[HTTPConnection] = set()
        self._lock = threading.Lock()
        self._released = False
        self._threads = [threading.Thread(target=self._keep_one, daemon=True)
                         for _ in range(slots)]
        for thread in self._threads:
            thread.start()

    def _keep_one(self) -> None:
        while True:
            conn = HTTPConnection(self._url.hostname, self._url.port, timeout=120)
            with self._lock:
                if self._released:
                    return
                self._open.add(conn)
            try:
                conn.request("POST", "/v1/completions", self._body,
                             {"Content-Type": "application/json"})
                conn.getresponse().read()
            except (OSError, HTTPException):
                pass  # released: its connection was closed under it
            finally:
                with self._lock:
                    self._open.discard(conn)
                conn.close()

    def release(self) -> None:
        with self._lock:
            self._released = True
            for conn in self._open:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def engines():
    pair = [Engine.start(*FLAGS), Engine.start(*FLAGS)]
    yield pair
    for engine in pair:
        engine.stop()


def _full(engine: Engine) -> bool:
    return (engine.metric("vllm:num_requests_running") == 1
            and engine.metric("vllm:num_requests_waiting") == 1)


@contextlib.contextmanager
def one_busy(engines: list[Engine], policy: str):
    """A gateway over both engines (the busy one listed first, so that a tie would pick it)
    while the first is kept full: (gateway, busy, idle)."""
    busy, idle = engines
    gateway = GatewayThread({"backends": [{"name": "busy", "url": busy.url},
                                          {"name": "idle", "url": idle.url}],
                             "routing": {"policy": policy}})
    backlog = Backlog(busy)
    try:
        wait_until(lambda: _full(busy), timeout=60, what="the busy engine's queue to fill")
        yield gateway, busy, idle
    finally:
        backlog.release()
        gateway.stop()


def test_a_full_engine_503_passes_through_and_is_not_retried(engines):
    with one_busy(engines, "round_robin") as (gateway, busy, _):
        status, _, expected = complete(busy.url, busy.model)
        assert status == 503, expected
        assert b"busy" in expected
        answers = [complete(gateway.url, busy.model) for _ in range(4)]
        refused = [a for a in answers if a[0] == 503]
        assert refused, "round robin sent nothing to the full engine"
        for _, headers, body in refused:
            assert body == expected  # vLLM's own envelope, unchanged
            assert headers["x-upstream-status"] == "503"
            assert headers["x-upstream-addr"].endswith(busy.url.rsplit(":", 1)[1])
        assert all(a[0] == 200 for a in answers if a not in refused)
        assert gateway.metric("warden_upstream_retries_total") == 0


def test_load_aware_routing_sends_work_to_the_idle_engine(engines):
    with one_busy(engines, "load_aware") as (gateway, _, idle):
        def seen_waiting() -> bool:
            _, _, body = http("GET", f"{gateway.url}/admin/backends")
            load = {b["name"]: b["load"] for b in json.loads(body)["backends"]}
            return bool(load["busy"] and load["busy"]["waiting"] == 1)

        wait_until(seen_waiting, timeout=30, what="the gateway to scrape the queue")
        for _ in range(6):
            status, headers, body = complete(gateway.url, idle.model)
            assert status == 200, body
            assert headers["x-upstream-addr"].endswith(idle.url.rsplit(":", 1)[1])
