"""Calibrate the simulator: one node, one fixed workload, rising offered load.

    python -m bench.calibrate [--seconds 10]

Prints one row per arrival rate: client-side TTFT and end-to-end latency, output throughput,
and what the node's own /metrics showed meanwhile (most requests waiting, highest KV-cache
usage, preemptions). Queueing should appear once the batch is full, preemption once the KV
cache is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request

import uvloop

from bench import procs
from bench.load import run, summarize
from bench.workload import WorkloadSpec, build

NODE = ["--token-delay", "0.015", "--prefill-time-per-token", "0.00005",
        "--decode-time-per-seq", "0.0002", "--max-num-seqs", "32", "--num-gpu-blocks", "600",
        "--max-model-len", "4096", "--output-tokens", "4096"]
RATES = (1, 2, 3, 4, 6, 8)


def scrape(root: str) -> dict[str, float]:
    """The load gauges and the preemption counter from a vLLM (or sim) `/metrics`."""
    text = urllib.request.urlopen(f"{root}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("vllm:num_requests_waiting", "vllm:num_requests_running",
                     "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"):
            if line.startswith(name + "{"):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values


async def measure(root: str, spec: WorkloadSpec) -> dict:
    """Run `spec` against the server at `root` (http://host:port) while sampling its
    /metrics every 0.2 s: the clients' view plus the server's peaks."""
    peaks = {"waiting": 0.0, "running": 0.0, "kv": 0.0}
    before = scrape(root)["vllm:num_preemptions_total"]
    sampling = True

    async def sample() -> None:
        while sampling:
            values = await asyncio.to_thread(scrape, root)
            peaks["waiting"] = max(peaks["waiting"], values["vllm:num_requests_waiting"])
            peaks["running"] = max(peaks["running"], values["vllm:num_requests_running"])
            peaks["kv"] = max(peaks["kv"], values["vllm:kv_cache_usage_perc"])
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    outcomes, wall = await run(f"{root}/v1", build(spec))
    sampling = False
    await sampler
    summary = summarize(outcomes, wall)
    summary.update(peaks, preemptions=scrape(root)["vllm:num_preemptions_total"] - before)
    return summary


def workload(rate: float, seconds: float) -> WorkloadSpec:
    return WorkloadSpec(rate=rate, duration=seconds, prompt_median=200, output_median=128,
                        output_cap=1024, shared_prefix_share=0.0, session_share=0.0, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    port = procs.free_port()
    node = procs.start([sys.executable, "-m", "warden", "sim", "--port", str(port), *NODE],
                       None)
    procs.wait_for_port(port)
    rows = ["| offered req/s | done req/s | output tok/s | TTFT p50 ms | TTFT p99 ms "
            "| E2E p50 s | max running | max waiting | max KV use | preemptions | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    try:
        for rate in RATES:
            s = uvloop.run(measure(f"http://127.0.0.1:{port}", workload(rate, args.seconds)))
            ttft, e2e = s["ttft"], s["e2e"]
            if ttft["p50"] is None:
                rows.append(f"| {rate} | 0 | 0 | — | — | — | — | — | — | — "
                            f"| {sum(s['errors'].values())} |")
                continue
            rows.append(
                f"| {rate} | {s['throughput_rps']:.1f} | {s['output_tokens_per_s']:.0f} "
                f"| {ttft['p50'] * 1e3:.0f} | {ttft['p99'] * 1e3:.0f} "
                f"| {e2e['p50']:.2f} | {s['running']:.0f} | {s['waiting']:.0f} "
                f"| {s['kv']:.2f} | {s['preemptions']:.0f} | {sum(s['errors'].values())} |")
            print(rows[-1], flush=True)
    finally:
        procs.stop(node)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
