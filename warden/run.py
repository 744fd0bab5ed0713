"""The long-running commands: gateway, simulator, demo. Each runs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from warden.app import build_app
from warden.config.schema import BackendSpec, Settings
from warden.sim.config import NodeConfig
from warden.sim.fleet import SimFleet


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


async def serve_gateway(settings: Settings, source: Path, stop: asyncio.Event) -> None:
    gateway = build_app(settings, source)
    await gateway.start()
    settle_heap()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def hangup() -> None:
        """SIGHUP: reopen the record file (an external logrotate moved it) and reload the
        config file."""
        if gateway.recorder is not None:
            gateway.recorder.reopen()
        task = loop.create_task(gateway.reload_source("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await stop.wait()
    await gateway.stop(grace=gateway.settings.timeouts.shutdown_grace)


async def serve_sim(host: str, port: int, configs: list[NodeConfig], stop: asyncio.Event) -> None:
    fleet = SimFleet(host, port, configs)
    await fleet.start()
    for node in fleet.nodes:
        print(f"sim node {node.index}: http://{node.host}:{node.port} "
              f"models={','.join(node.config.models)} vllm={node.config.vllm_version}",
              flush=True)
    print("sim ready", flush=True)
    await stop.wait()
    await fleet.stop()


async def serve_demo(port: int, sim_port: int, nodes: int, config: NodeConfig,
                     stop: asyncio.Event) -> None:
    fleet = SimFleet("127.0.0.1", sim_port, [config] * nodes)
    await fleet.start()
    settings = Settings(
        listen=("127.0.0.1", port),
        backends=[BackendSpec(name=f"sim-{n.index}", url=f"http://127.0.0.1:{n.port}")
                  for n in fleet.nodes])
    gateway = build_app(settings)
    await gateway.start()
    model = config.models[0]
    print(DEMO_BANNER.format(port=port, nodes=nodes, sim_port=sim_port,
                             last=sim_port + nodes - 1, model=model,
                             records=settings.recorder.dir), flush=True)
    await stop.wait()
    await gateway.stop(grace=1.0)
    await fleet.stop()


DEMO_BANNER = """
Warden demo: {nodes} simulated vLLM nodes on 127.0.0.1:{sim_port}-{last}, gateway on \
http://127.0.0.1:{port}

Try it:

  curl -s http://127.0.0.1:{port}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  curl -sN http://127.0.0.1:{port}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "stream": true, "messages": [{{"role": "user", "content": "Hi"}}]}}'

  python - <<'EOF'
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:{port}/v1", api_key="unused")
  for chunk in client.chat.completions.create(
          model="{model}", stream=True, messages=[{{"role": "user", "content": "Hi"}}]):
      print(chunk.choices[0].delta.content or "", end="", flush=True) if chunk.choices else None
  print()
  EOF

Backends: http://127.0.0.1:{port}/admin/backends   Metrics: http://127.0.0.1:{port}/metrics
Every request is recorded in {records}/ (try: warden audit tail -f --dir {records}).
Ctrl-C stops it.
"""



