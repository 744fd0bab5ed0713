"""What the simulator costs: one `warden sim` process, 8 nodes, 200 streams open at once.

    python -m bench.sim_cost [--nodes 8] [--streams 200] [--tokens 100] [--token-delay 0.02]

The sim is pinned to one core and the clients to the other; printed: the wall time for every
stream to finish (the ideal is tokens times the token delay, plus the first step), the sim's CPU
seconds for it, and the share of one core that is. The issue's bar: 8 nodes with 200 streams
in total on one core, i.e. well under 100%.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import uvloop

from bench import procs
from bench.load import send


async def streams(base_port: int, nodes: int, count: int, tokens: int) -> list:
    body = {"model": "sim-model", "stream": True, "max_tokens": tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": "cost"}]}
    return await asyncio.gather(*(send("127.0.0.1", base_port + i % nodes,
                                       "/v1/chat/completions", body, 120)
                                  for i in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--token-delay", type=float, default=0.02)
    args = parser.parse_args()
    base = procs.free_port()
    sim = procs.start([sys.executable, "-m", "warden", "sim", "--nodes", str(args.nodes),
                       "--port", str(base), "--token-delay", str(args.token_delay)], 0)
    try:
        for i in range(args.nodes):
            procs.wait_for_port(base + i)
        before, started = procs.cpu_seconds(sim.pid), time.monotonic()
        outcomes = uvloop.run(streams(base, args.nodes, args.streams, args.tokens))
        wall, cpu = time.monotonic() - started, procs.cpu_seconds(sim.pid) - before
    finally:
        procs.stop(sim)
    errors = sum(o.error is not None for o in outcomes)
    ideal = args.tokens * args.token_delay
    print(f"{args.nodes} nodes, {args.streams} streams of {args.tokens} tokens "
          f"{args.token_delay * 1e3:g} ms apart: all done in {wall:.2f} s (ideal {ideal:.2f} s), "
          f"sim CPU {cpu:.2f} s = {cpu / wall:.0%} of one core, errors {errors}")


if __name__ == "__main__":
    main()
