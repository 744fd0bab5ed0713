"""Test harness: `warden sim` as a real subprocess, the gateway in a thread of its own (its own
uvloop), and a polling wait for conditions (tests/waiting.py: never a bare sleep standing in
for sync)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import openai
import uvloop

from bench.procs import free_port_block
from tests.waiting import until as until  # (re-exported: tests take them from here)
from tests.waiting import wait_until as wait_until
from warden.app import Gateway, build_app
from warden.settings import parse_settings


def freed_without_collector(make: Callable[[], object]) -> bool:
    """Whether what `make()` returns is freed by reference counting alone once `make` has let
    go of it (the cyclic collector off meanwhile): False when it is part of a cycle."""
    # (Not a weakref: compiled classes (warden.compiled) take none. A live object of a
    # class with attributes is tracked by the collector, so gc.get_objects() lists it.)
    gc.disable()
    try:
        made = make()
        kind, address = type(made), id(made)
        del made
        return not any(id(o) == address for o in gc.get_objects() if type(o) is kind)
    finally:
        gc.enable()


def stream_error(stream) -> openai.APIError:
    """Read an SDK stream to its end, which must be an error; return that error."""
    try:
        for _ in stream:
            pass
    except openai.APIError as e:
        return e
    raise AssertionError("the stream ended without an error")


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10.0):
    """(status, headers, body) for one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def engine_metric(url: str, name: str, labels: str = "") -> float:
    """The sum of a vLLM (or sim) metric's samples, from `url`/metrics, whose labels contain
    `labels`."""
    _, _, body = http("GET", f"{url}/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


_GATEWAY_SUFFIX = re.compile(r"\.[0-9a-f]{12}-[0-9a-f]+$")


class SimProcess:
    """`warden sim --nodes N` on consecutive loopback ports."""

    def __init__(self, nodes: int = 3, *extra: str):
        self.nodes = nodes
        self.base_port = free_port_block(nodes)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "warden", "--log-level", "WARNING", "sim", "--nodes",
             str(nodes), "--port", str(self.base_port), *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip() == "sim ready":
                break
        else:
            raise RuntimeError(f"warden sim exited with {self._proc.wait()}")

    def url(self, node: int) -> str:
        return f"http://127.0.0.1:{self.base_port + node}"

    def kill_node(self, node: int, via: int | None = None) -> None:
        via = via if via is not None else (node + 1) % self.nodes
        status, _, body = http("POST", f"{self.url(via)}/sim/kill?node={node}")
        assert status == 200, body

    def revive_node(self, node: int, via: int | None = None) -> None:
        via = via if via is not None else (node + 1) % self.nodes
        status, _, body = http("POST", f"{self.url(via)}/sim/revive?node={node}")
        assert status == 200, body

    def request_ids(self, via: int = 0, as_sent: bool = False) -> dict[int, list[str]]:
        """The X-Request-Id of every request each node got: as the clients chose them (the
        gateway sends a client's id made unique: `<id>.<its prefix>-<n>`), or `as_sent`."""
        _, _, body = http("GET", f"{self.url(via)}/sim/requests")
        nodes = {n["index"]: n["request_ids"] for n in json.loads(body)["nodes"]}
        if as_sent:
            return nodes
        return {index: [_GATEWAY_SUFFIX.sub("", rid) for rid in ids]
                for index, ids in nodes.items()}

    def metric(self, node: int, name: str, labels: str = "") -> float:
        return engine_metric(self.url(node), name, labels)

    def node_of(self, response_headers) -> int:
        """Which node answered, from the gateway's X-Upstream-Addr."""
        return int(response_headers["x-upstream-addr"].rsplit(":", 1)[1]) - self.base_port

    def backends_config(self) -> list[dict]:
        return [{"name": f"node-{i}", "url": self.url(i)} for i in range(self.nodes)]

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class GatewayThread:
    """A real gateway on a real socket, run by its own uvloop in a background thread."""

    def __init__(self, config: dict, environ: dict[str, str] | None = None):
        # The flight recorder writes to a directory of this gateway's own unless told where.
        self._own_records = None
        if "dir" not in config.get("recorder", {}):
            self._own_records = tempfile.mkdtemp(prefix="warden-records-")
        self.settings = self._settings(config, environ)
        self.gateway: Gateway | None = None
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.gateway = self.call(self._start)
        self.url = f"http://127.0.0.1:{self.gateway.port}"

    def _settings(self, config: dict, environ: dict[str, str] | None = None):
        # Tests read which node answered from X-Upstream-Addr: shown unless a test says not
        # (the shipped default hides it).
        config = {"expose_upstream": True, **config}
        if self._own_records is not None:
            config = {**config, "recorder": {**config.get("recorder", {}),
                                             "dir": self._own_records}}
        return parse_settings(config, environ or {})

    def reload(self, config: dict) -> list[str]:
        """Reload the running gateway with `config` (as SIGHUP does with a file); returns
        the settings that changed but wait for a restart."""
        settings = self._settings(config)
        return self.call(lambda: self.gateway.reload(settings))

    async def _start(self) -> Gateway:
        gateway = build_app(self.settings)
        await gateway.start(port=0)
        return gateway

    def call(self, fn: Callable[[], Any] | Any, timeout: float = 30.0) -> Any:
        """Run a coroutine function (or a plain function) in the gateway's loop."""
        async def runner():
            result = fn()
            return await result if asyncio.iscoroutine(result) else result
        future: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(runner(),
                                                                             self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"the gateway's loop did not finish {fn!r} within "
                                 f"{timeout}s; where it is:\n{self._where()}") from None

    def _where(self) -> str:
        """The gateway thread's stack and its loop's tasks' stacks (to diagnose a hang)."""
        out = io.StringIO()
        frame = sys._current_frames().get(self._thread.ident or 0)
        out.write("-- the gateway's thread:\n")
        out.write("".join(traceback.format_stack(frame)) if frame is not None else "(gone)\n")
        try:
            tasks = list(asyncio.all_tasks(self._loop))
        except RuntimeError:  # (the set changed under us: this runs in another thread)
            tasks = []
        for task in tasks:
            task.print_stack(limit=8, file=out)
        return out.getvalue()

    @property
    def records(self) -> str:
        """Its flight recorder's directory (incidents are written under it)."""
        return self.settings.recorder.dir

    def in_flight(self) -> int:
        return self.call(lambda: self.gateway.in_flight())

    def wait_idle(self) -> None:
        """Until no request is in flight (every exchange has ended)."""
        wait_until(lambda: self.in_flight() == 0, what="in-flight count back to 0")

    def metric(self, name: str, labels: str = "") -> float:
        _, _, body = http("GET", f"{self.url}/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and labels in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, gateway_stopped: bool = False) -> None:
        """Stop the gateway (unless a test already did) and its loop."""
        assert self.gateway is not None
        if not gateway_stopped:
            self.call(lambda: self.gateway.stop(grace=0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        if self._own_records is not None:
            shutil.rmtree(self._own_records, ignore_errors=True)


def serve(config: str, workdir, *flags: str,
          stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """`warden serve` with `config` (YAML text; its `listen` is added here) and `flags` in
    `workdir`, as a subprocess, once it answers /ready: (the process, its base URL)."""
    port = free_port_block(1)
    path = workdir / "warden.yaml"
    path.write_text(f"listen: 127.0.0.1:{port}\n{config}")
    proc = subprocess.Popen([sys.executable, "-m", "warden", "serve", "-c", str(path), *flags],
                            cwd=workdir, stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"warden serve exited with {proc.returncode}")
        try:
            return http("GET", f"{url}/ready", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(ready, what="warden serve to be ready")
    return proc, url


@contextlib.contextmanager
def running_demo(workdir) -> Iterator[tuple[str, int]]:
    """`warden demo` in `workdir`, on free ports, until its banner is printed: (the banner,
    the gateway's port). Stopped with SIGTERM afterwards, which it must obey (exit 0)."""
    port, sim_port = free_port_block(1), free_port_block(3)
    proc = subprocess.Popen([sys.executable, "-m", "warden", "demo", "--port", str(port),
                             "--sim-port", str(sim_port)], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    try:
        banner = ""
        while "Ctrl-C stops it." not in banner:
            line = proc.stdout.readline()
            assert line, f"demo exited early: {banner}"
            banner += line
        yield banner, port
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0

