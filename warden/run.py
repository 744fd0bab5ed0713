"""The long-running commands: gateway, simulator, demo. Each runs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import uvloop

from warden import __version__
from warden.app import build_app
from warden.app.gateway import Gateway
from warden.compiled import describe
from warden.config.schema import BackendSpec, Settings
from warden.observe.log_metrics import LogCollector
from warden.observe.log_output import LogOutput
from warden.observe.logs import formatter
from warden.sim.config import NodeConfig
from warden.sim.fleet import SimFleet

log = logging.getLogger("warden")


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on uvloop; `stop` is set by SIGINT or SIGTERM."""

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(wrapper())


def port_taken(host: str, ports: Iterable[int]) -> str | None:
    """Why the first of `ports` on `host` cannot be listened on (`127.0.0.1:8000: Address
    already in use`), or None: checked before anything starts, so that a taken port costs
    one line, not a traceback after half the processes' parts have started. (Bound as the
    server binds, with SO_REUSEADDR: a port held only by connections in TIME_WAIT is free.)
    """
    for port in ports:
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            return f"{host}:{port}: {e.strerror}"
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as e:
                    return f"{host}:{port}: {e.strerror}"
    return None


def settle_heap() -> None:
    """Once the gateway has started: what exists now (modules, config, the fleet) is moved
    out of the cyclic collector's sight, and its young generation is collected every 20,000
    container allocations instead of 700.

    Why: the data path leaves no reference cycles (tests/integration/test_memory.py), so what
    it allocates is freed by reference counting and a collection finds nothing; yet each one
    scans every container alive at that moment, and the full ones the whole heap. py-spy in
    the streaming benchmark: 0.6-1.9% of the gateway's CPU in collections before, none after.
    Cycles made elsewhere (an exception's traceback, a reload) are still collected, later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


# How long a thread may run Python while another waits for the GIL (CPython's default: 5 ms).
# The event loop shares the GIL with the recorder's writer thread and the executor's; with
# the default, a loop that wanted it back waited up to 5 ms each time, a stall of the whole
# data path (bench.loop_stalls). At 0.5 ms the wait is bounded below the lag histogram's
# first stall bucket; the cost, a switch every 0.5 ms, is paid only while two threads both
# run Python, which the writer (it only writes bytes) seldom does.
SWITCH_INTERVAL = 0.0005


def share_the_gil() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)


async def serve_gateway(settings: Settings, source: Path, stop: asyncio.Event,
                        log_level: str | None = None,
                        hung_up: Callable[[], bool] | None = None) -> None:
    """`log_level`: the command line's `--log-level`, which wins over `logging.level`;
    `hung_up()`: whether a SIGHUP came before the start (acted on once started)."""
    spec = settings.logging
    output = LogOutput(formatter(spec.format), spec.queue_size)
    output.install(log_level or spec.level)  # (from here on, nothing logged blocks the loop)
    try:
        await _serve(settings, source, stop, output, hung_up)
    finally:
        output.close()


async def _serve(settings: Settings, source: Path, stop: asyncio.Event,
                 output: LogOutput, hung_up: Callable[[], bool] | None) -> None:
    gateway = build_app(settings, source)
    gateway.metrics.registry.register(LogCollector(output))  # type: ignore[arg-type]
    await gateway.start()
    started = time.monotonic()
    log.info("warden started", extra={"fields": start_fields(gateway)})
    settle_heap()
    share_the_gil()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[dict]] = set()

    def hangup() -> None:
        """SIGHUP: reopen the record file (an external logrotate moved it) and reload the
        config file."""
        if gateway.recorder is not None:
            gateway.recorder.reopen()
        task = loop.create_task(gateway.reload_source("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    if hung_up is not None and hung_up():
        hangup()
    await stop.wait()
    log.info("warden stopping", extra={"fields": {"event": "stopping",
                                                  "in_flight": gateway.in_flight()}})
    await gateway.stop(grace=gateway.settings.timeouts.shutdown_grace)
    log.info("warden stopped", extra={"fields": {
        "event": "stop", "uptime_s": round(time.monotonic() - started, 3),
        "requests": gateway.metrics.ended_total, "log_dropped": output.dropped}})


def start_fields(gateway: Gateway) -> dict[str, object]:
    """The start-up line's fields: what runs, and a summary of its config."""
    settings = gateway.settings
    spec = settings.logging
    return {
        "event": "start", "version": __version__, "build": describe(),
        "python": platform.python_version(), "pid": os.getpid(),
        "listen": f"{settings.listen[0]}:{gateway.port}", "tls": settings.tls is not None,
        "config": {
            "source": str(gateway.source) if gateway.source is not None else None,
            "backends": len(settings.backends), "routing": settings.routing.policy,
            "guard": settings.guard.mode, "auth": settings.auth.mode,
            "recorder": settings.recorder.enabled, "log_format": spec.format,
            "access_log": spec.access_log.sample if spec.access_log.enabled else None,
            "tracing": settings.tracing.sample if settings.tracing.enabled else None}}


async def serve_sim(host: str, port: int, configs: list[NodeConfig], stop: asyncio.Event) -> None:
    fleet = SimFleet(host, port, configs)
    try:
        await fleet.start()
        for node in fleet.nodes:
            print(f"sim node {node.index}: http://{node.host}:{node.port} "
                  f"models={','.join(node.config.models)} vllm={node.config.vllm_version}",
                  flush=True)
        print("sim ready", flush=True)
        await stop.wait()
    finally:
        await fleet.stop()


async def serve_demo(port: int, sim_port: int, nodes: int, config: NodeConfig,
                     stop: asyncio.Event) -> None:
    fleet = SimFleet("127.0.0.1", sim_port, [config] * nodes)
    try:
        await fleet.start()
        settings = Settings(
            listen=("127.0.0.1", port),
            backends=[BackendSpec(name=f"sim-{n.index}", url=f"http://127.0.0.1:{n.port}")
                      for n in fleet.nodes])
        gateway = build_app(settings)
        await gateway.start()
        try:
            print(demo_banner(port, nodes, sim_port, config.models[0], settings.recorder.dir),
                  flush=True)
            await stop.wait()
        finally:
            await gateway.stop(grace=1.0)
    finally:
        await fleet.stop()


def demo_banner(port: int, nodes: int, sim_port: int, model: str, records: str) -> str:
    """What `warden demo` prints: every command in it runs as pasted into a shell (so the
    Python example is a heredoc at the start of its lines, and needs only the standard
    library)."""
    return DEMO_BANNER.format(port=port, nodes=nodes, sim_port=sim_port,
                              last=sim_port + nodes - 1, model=model, records=records)


# The commands are separated by blank lines, between "Try it" and "With the openai SDK"
# (tests/integration/test_cli_demo.py runs each as printed).
DEMO_BANNER = """
Warden demo: {nodes} simulated vLLM nodes on 127.0.0.1:{sim_port}-{last}, gateway on \
http://127.0.0.1:{port}

Try it (each command runs as pasted):

curl -s http://127.0.0.1:{port}/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

curl -sN http://127.0.0.1:{port}/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "{model}", "stream": true, "messages": [{{"role": "user", "content": "Hi"}}]}}'

python3 - <<'EOF'
import json, urllib.request
body = {{"model": "{model}", "stream": True, "messages": [{{"role": "user", "content": "Hi"}}]}}
request = urllib.request.Request("http://127.0.0.1:{port}/v1/chat/completions",
                                 json.dumps(body).encode(), {{"Content-Type": "application/json"}})
with urllib.request.urlopen(request) as response:
    for line in response:
        if line.startswith(b"data: {{"):
            for choice in json.loads(line[6:])["choices"]:
                print(choice["delta"].get("content") or "", end="", flush=True)
print()
EOF

With the openai SDK (pip install openai): OpenAI(base_url="http://127.0.0.1:{port}/v1", \
api_key="unused")
Backends: http://127.0.0.1:{port}/admin/backends   Metrics: http://127.0.0.1:{port}/metrics
Every request is recorded in {records}/ (try: warden audit tail -f --dir {records}).
Ctrl-C stops it.
"""
