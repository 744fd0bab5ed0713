"""Routing benchmark: each policy in front of the same heterogeneous simulated fleet, under the
same realistic workload.

    python -m bench.routing_bench [--seconds 40] [--rate 12]

The fleet (`warden sim --fleet`): four nodes with the calibrated engine profile
(bench.calibrate), one with half the KV cache, one twice as slow. The workload
(bench.workload): Poisson arrivals near the fleet's saturation, long-tailed prompt and output
lengths, half the requests opening with one of a few long system prompts, a fifth in
multi-turn sessions. For each preset the fleet is started afresh (empty caches, zeroed
counters) and the same requests are sent at the same times. Then load_aware runs again with a
node killed mid-run and restarted: the errors must be the requests in flight on it.

Prints one table and writes it to bench/results/routing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import uvloop

from bench import procs
from bench.load import run, summarize
from bench.workload import WorkloadSpec, build

FLEET = """\
defaults: {token_delay: 0.015, prefill_time_per_token: 0.00005, decode_time_per_seq: 0.0002,
           max_num_seqs: 32, num_gpu_blocks: 600, max_model_len: 4096, output_tokens: 4096,
           restart_after: 1.0, exit_after: 0.0}
nodes:
  - {count: 2}
  - {num_gpu_blocks: 300}                                          # half the KV cache
  - {token_delay: 0.03, prefill_time_per_token: 0.0001,
     decode_time_per_seq: 0.0004}                                  # twice as slow
"""
NODES = 4
PRESETS = ("round_robin", "least_request", "tiered", "load_aware", "prefix_aware")
GATEWAY_CORE, LOAD_CORE = 0, 1


def workload(rate: float, seconds: float) -> WorkloadSpec:
    return WorkloadSpec(rate=rate, duration=seconds, prompt_median=150, output_median=96,
                        output_cap=1024, shared_prefix_share=0.5, system_prompts=16,
                        system_prompt_words=400, session_share=0.2, seed=7)


def node_counters(port: int) -> dict[str, float]:
    """Preemptions and prefix-cache tokens from a node's /metrics (0 if it is down)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) \
            .read().decode()
    except OSError:
        return {}
    wanted = ("vllm:num_preemptions_total", "vllm:prefix_cache_hits_total",
              "vllm:prefix_cache_queries_total")
    values: dict[str, float] = {}
    for line in text.splitlines():
        for name in wanted:
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


class Setup:
    """A fresh simulated fleet and a gateway with `policy` in front of it."""

    def __init__(self, workdir: Path, policy: str):
        fleet = workdir / "fleet.yaml"
        fleet.write_text(FLEET)
        self.base = procs.free_port_block(NODES)
        self.sim = procs.start([sys.executable, "-m", "warden", "--log-level", "WARNING",
                                "sim", "--fleet", str(fleet), "--port", str(self.base)],
                               LOAD_CORE)
        for i in range(NODES):
            procs.wait_for_port(self.base + i)
        self.port = procs.free_port()
        config = workdir / f"warden-{policy}.yaml"
        backends = "".join(f"  - {{name: node-{i}, url: 'http://127.0.0.1:{self.base + i}'}}\n"
                           for i in range(NODES))
        # Its own state, in the run's temporary directory: a death in one run must not leave
        # a quarantine (403s) behind for the next.
        state = workdir / f"state-{policy}-{self.port}"
        config.write_text(f"listen: 127.0.0.1:{self.port}\nbackends:\n{backends}"
                          f"routing: {{policy: {policy}}}\n"
                          f"recorder: {{enabled: false, dir: '{state}'}}\n"
                          f"guard: {{quarantine: {{file: '{state}/quarantine.json'}}}}\n")
        self.gateway = procs.start([sys.executable, "-m", "warden", "--log-level", "WARNING",
                                    "serve", "-c", str(config)], GATEWAY_CORE)
        procs.wait_for_port(self.port)

    def counters(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for i in range(NODES):
            for name, value in node_counters(self.base + i).items():
                total[name] = total.get(name, 0.0) + value
        return total

    def backends(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/admin/backends") as r:
            return json.loads(r.read())["backends"]

    def in_flight_on(self, node: int) -> int:
        return next(b["in_flight"] for b in self.backends() if b["name"] == f"node-{node}")

    def wait_for_signals(self, timeout: float = 15.0) -> None:
        """Until the gateway has scraped every node once."""
        deadline = time.monotonic() + timeout
        while not all(b["load"] for b in self.backends()):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway never scraped every node")
            time.sleep(0.05)

    def kill(self, node: int, down_for: float) -> None:
        via = (node + 1) % NODES
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.base + via}/sim/kill?node={node}&down={down_for}",
            method="POST")
        urllib.request.urlopen(request, timeout=5).read()

    def stop(self) -> None:
        procs.stop(self.gateway)
        procs.stop(self.sim)


async def measure(setup: Setup, spec: WorkloadSpec, kill_at: float | None = None) -> dict:
    before = setup.counters()
    killed: dict[str, int] = {}

    async def killer() -> None:
        await asyncio.sleep(kill_at)  # type: ignore[arg-type]
        killed["in_flight"] = await asyncio.to_thread(setup.in_flight_on, 1)
        await asyncio.to_thread(setup.kill, 1, 3.0)

    task = asyncio.create_task(killer()) if kill_at is not None else None
    outcomes, wall = await run(f"http://127.0.0.1:{setup.port}/v1", build(spec))
    if task is not None:
        await task
    if kill_at is not None:  # read the restarted node's counters too
        await asyncio.to_thread(procs.wait_for_port, setup.base + 1)
    after = setup.counters()
    summary = summarize(outcomes, wall)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    queried = delta.get("vllm:prefix_cache_queries_total", 0.0)
    summary["preemptions"] = delta.get("vllm:num_preemptions_total", 0.0)
    summary["prefix_hit_rate"] = (delta.get("vllm:prefix_cache_hits_total", 0.0) / queried
                                  if queried > 0 else 0.0)
    summary["killed_in_flight"] = killed.get("in_flight")
    return summary


def row(name: str, s: dict) -> str:
    def ms(key: str, q: str) -> str:
        value = s[key][q]
        return "—" if value is None else f"{value * 1e3:.0f}"
    errors = sum(s["errors"].values()) if s["errors"] else 0
    kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(s["errors"].items()))
    extra = (f" ({kinds})" if kinds else "") + ("" if s["killed_in_flight"] is None else
                                                f"; in flight on the killed node: "
                                                f"{s['killed_in_flight']}")
    return (f"| {name} | {ms('ttft', 'p50')} | {ms('ttft', 'p99')} | {ms('e2e', 'p50')} "
            f"| {ms('e2e', 'p99')} | {s['throughput_rps']:.2f} | {s['preemptions']:.0f} "
            f"| {s['prefix_hit_rate']:.1%} | {errors}{extra} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0, help="of arrivals per run")
    parser.add_argument("--rate", type=float, default=12.0, help="requests per second")
    parser.add_argument("--only", help="these presets (comma-separated), no kill run")
    args = parser.parse_args()
    spec = workload(args.rate, args.seconds)
    rows = ["| policy | TTFT p50 ms | TTFT p99 ms | E2E p50 ms | E2E p99 ms | req/s "
            "| preemptions | prefix-cache hit rate | errors |",
            "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(rows), flush=True)
    presets = args.only.split(",") if args.only else PRESETS
    runs = [(policy, None) for policy in presets]
    if not args.only:
        runs.append(("load_aware", args.seconds / 2))
    with tempfile.TemporaryDirectory(prefix="warden-routing-") as tmp:
        for policy, kill_at in runs:
            setup = Setup(Path(tmp), policy)
            try:
                setup.wait_for_signals()
                summary = uvloop.run(measure(setup, spec, kill_at))
            finally:
                setup.stop()
            name = policy if kill_at is None else f"{policy}, node-1 killed mid-run"
            rows.append(row(name, summary))
            print(rows[-1], flush=True)
    header = (f"### Routing: 4 sim nodes (one with half the KV cache, one 2x slower), "
              f"{args.rate:g} req/s Poisson for {args.seconds:g} s, 50% shared system "
              f"prompts, 20% multi-turn sessions\n")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "routing.md").write_text(header + "\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
