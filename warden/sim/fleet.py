"""A fleet of simulated nodes on consecutive ports, with control routes for tests.

Control routes are served by every live node and act on the whole fleet, so a test can kill
node 0 through node 1 and bring it back later:

    POST /sim/kill?node=0[&down=2.5]   reset node 0's connections and stop listening
                                        (for `down` seconds, else until revived)
    POST /sim/revive?node=0            listen again with a fresh engine (counters reset)
    POST /sim/fault?node=0&mode=M[&value=V]   hang | slow (V = factor) | errors (V = count) |
                                        refuse | crash (as a poison request does) |
                                        metrics_down | health_slow (V = seconds) | recover
    GET  /sim/requests                 the X-Request-Id of every request each node received
                                        with one
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import orjson

from warden.edge.request import HttpRequest
from warden.sim.config import NodeConfig
from warden.sim.node import SimNode


class SimFleet:
    def __init__(self, host: str, base_port: int, configs: list[NodeConfig]):
        self.nodes = [SimNode(i, host, base_port + i, config, self.control)
                      for i, config in enumerate(configs)]
        self._revivals: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()

    async def stop(self) -> None:
        for task in self._revivals:
            task.cancel()
        for node in self.nodes:
            await node.kill()

    async def kill(self, index: int, down_for: float | None = None) -> None:
        node = self.nodes[index]
        await node.kill()
        if down_for is not None:
            self._background(self._revive_later(node, down_for))

    def _background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._revivals.add(task)
        task.add_done_callback(self._revivals.discard)

    async def _revive_later(self, node: SimNode, delay: float) -> None:
        await asyncio.sleep(delay)
        await node.revive()

    async def control(self, request: HttpRequest, answering: SimNode) -> tuple[int, bytes]:
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        try:
            if request.path == "/sim/requests":
                nodes = [{"index": n.index, "port": n.port, "alive": n.alive,
                          "request_ids": list(n.request_ids),
                          "traceparents": list(n.traceparents)} for n in self.nodes]
                return 200, orjson.dumps({"nodes": nodes})
            index = int(query.get("node", "-1"))
            if not 0 <= index < len(self.nodes) or request.method != "POST":
                return 400, b'{"error":"POST with node=<index> in range"}'
            if request.path == "/sim/kill":
                down = float(query["down"]) if "down" in query else None
                if index != answering.index:
                    await self.kill(index, down)  # dead before the caller hears back
                    return 200, b'{"status":"dead"}'
                # A node killing itself answers first, then dies.
                answering.after_answer(lambda: self._background(self.kill(index, down)))
                return 200, b'{"status":"dying"}'
            if request.path == "/sim/revive":
                await self.nodes[index].revive()
                return 200, b'{"status":"alive"}'
            if request.path == "/sim/fault":
                await self.nodes[index].fault(query.get("mode", ""),
                                              float(query.get("value", "0")))
                return 200, b'{"status":"ok"}'
        except ValueError:
            return 400, b'{"error":"bad query"}'
        return 404, b'{"error":"unknown control route"}'
