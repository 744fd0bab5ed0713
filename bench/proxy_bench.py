"""Proxy benchmark: direct connection vs nginx (configured as the seeds configure it) vs Warden.

Each proxy runs alone on core 0; wrk, the backends and the stream client share core 1. Run:

    python -m bench.proxy_bench [--seconds 5] [--rounds 3]

Prints one table per scenario and writes it to bench/results/proxy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench import procs
from bench.load import Outcome, send
from bench.nginx_conf import COMPLETION, PROXY, STATIC_BACKEND, nginx_command
from bench.wrk import WrkResult, post_script, run_wrk
from warden import compiled

PROXY_CORE, LOAD_CORE = 0, 1
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


# Warden's variants, as config. `warden` is the shipped defaults (the guard on, the flight
# recorder on, recording a summary of each response); each other one changes one thing from
# them, so its row says what that thing costs: the recorder off, the guard off too, and the
# recorder capturing everything. Each has a directory of its own: a gateway locks its own.
VARIANTS = {
    "warden": "recorder: {{dir: '{dir}'}}",
    "warden-norec": "recorder: {{enabled: false, dir: '{dir}'}}",
    "warden-bare": "recorder: {{enabled: false, dir: '{dir}'}}\nguard: {{mode: 'off'}}",
    "warden+full": "recorder: {{response: full, dir: '{dir}'}}",
}


def warden_command(workdir: Path, port: int, upstream: int, name: str,
                   variant: str = VARIANTS["warden"]) -> list[str]:
    config = workdir / f"warden-{name}.yaml"
    records = workdir / f"records-{name}"
    config.write_text(f"listen: 127.0.0.1:{port}\nbackends:\n"
                      f"  - {{name: b, url: 'http://127.0.0.1:{upstream}', models: [m]}}\n"
                      f"{variant.format(dir=records)}\n")
    return [sys.executable, "-m", "warden", "--log-level", "WARNING", "serve", "-c",
            str(config)]


class Proxies:
    """nginx and Warden's variants in front of one upstream, each pinned to the proxy
    core."""

    def __init__(self, workdir: Path, upstream: int, tag: str):
        self.ports = {name: procs.free_port() for name in ("nginx", *VARIANTS)}
        self.procs = {"nginx": procs.start(nginx_command(workdir, f"proxy-{tag}", PROXY.format(
            port=self.ports["nginx"], upstream=upstream)), PROXY_CORE)}
        for name, variant in VARIANTS.items():
            self.procs[name] = procs.start(warden_command(
                workdir, self.ports[name], upstream, f"{tag}-{name.replace('+', '-')}",
                variant), PROXY_CORE)
        for port in self.ports.values():
            procs.wait_for_port(port)

    def measure_cpu(self, name: str, work: Callable[[], object]) -> tuple[object, float]:
        pid = self.procs[name].pid
        before = procs.cpu_seconds(pid)
        result = work()
        return result, procs.cpu_seconds(pid) - before

    def stop(self) -> None:
        for proc in self.procs.values():
            procs.stop(proc)


def non_streaming(workdir: Path, seconds: float, rounds: int) -> list[str]:
    """Per concurrency: the direct connection once, then `rounds` rounds of nginx and Warden
    back to back, so each pair shares the machine's state (this shared VM's speed drifts by
    ±20% within minutes). A row is a proxy's median round; "vs nginx" is the median of the
    per-round ratios, with their range."""
    backend_port = procs.free_port()
    backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
        port=backend_port, body=COMPLETION)), LOAD_CORE)
    procs.wait_for_port(backend_port)
    proxies = Proxies(workdir, backend_port, "plain")
    script = post_script(workdir, CHAT)
    rows = ["| target | conc. | req/s | vs nginx (range) | CPU µs/req | p50 ms | p99 ms "
            "| added p50 ms | errors |", "|---|---|---|---|---|---|---|---|---|"]
    try:
        for conns in (1, 16, 64):
            direct = run_wrk(f"http://127.0.0.1:{backend_port}/v1/chat/completions", script,
                             conns, seconds, LOAD_CORE)
            rows.append(_row("direct", conns, direct, None, "—", None))
            runs: dict[str, list[tuple[WrkResult, float]]] = {name: [] for name in proxies.ports}
            for _ in range(rounds):
                for name, port in proxies.ports.items():
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    runs[name].append(proxies.measure_cpu(
                        name, lambda url=url, conns=conns: run_wrk(url, script, conns, seconds,
                                                                   LOAD_CORE)))
            for name, results in runs.items():
                result, cpu = sorted(results, key=lambda r: r[0].rps)[len(results) // 2]
                ratio = "1.00" if name == "nginx" else _median_and_range([
                    w.rps / n.rps for (w, _), (n, _) in zip(results, runs["nginx"],
                                                            strict=True)])
                rows.append(_row(name, conns, result, cpu / max(result.requests, 1) * 1e6,
                                 ratio, result.p50_ms - direct.p50_ms))
    finally:
        proxies.stop()
        procs.stop(backend)
    return rows


def _median_and_range(ratios: list[float]) -> str:
    return f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}..{max(ratios):.2f})"


def _row(name, conns, r: WrkResult, cpu_us, ratio: str, added) -> str:
    fmt = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    return (f"| {name} | {conns} | {r.rps:,.0f} | {ratio} | {fmt(cpu_us, '.1f')} "
            f"| {r.p50_ms:.3f} | {r.p99_ms:.3f} | {fmt(added, '.3f')} | {r.errors} |")


async def ttft_median(port: int, samples: int) -> float:
    outcomes = [await send("127.0.0.1", port, "/v1/chat/completions", STREAM, 60)
                for _ in range(samples)]
    return statistics.median(o.ttft for o in outcomes if o.error is None)


async def many_streams(port: int, total: int, concurrency: int) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Outcome:
        async with gate:
            return await send("127.0.0.1", port, "/v1/chat/completions", STREAM, 60)

    return await asyncio.gather(*(one() for _ in range(total)))


def events(outcome: Outcome) -> int:
    """SSE events received, [DONE] included."""
    return len(outcome.gaps) + 1 if outcome.ttft is not None else 0


def start_sim(*flags: str):
    """A one-node `warden sim` on the load core, roomy enough for every stream at once."""
    port = procs.free_port()
    sim = procs.start([sys.executable, "-m", "warden", "sim", "--port", str(port), "--model",
                       "m", "--max-num-seqs", "4096", *flags], LOAD_CORE)
    procs.wait_for_port(port)
    return sim, port


def streaming(workdir: Path, rounds: int) -> list[str]:
    """20 chunks 10 ms apart: added TTFT, and CPU per relayed stream and per event, in
    `rounds` back-to-back rounds of nginx then Warden (medians; the ratio's range shown)."""
    sim, sim_port = start_sim("--output-tokens", "20", "--token-delay", "0.01")
    proxies = Proxies(workdir, sim_port, "stream")
    rows = ["| target | TTFT p50 ms | added TTFT ms | streams | errors | CPU µs/stream "
            "| CPU µs/event | vs nginx (range) |", "|---|---|---|---|---|---|---|---|"]
    per_round, concurrency = 1000, 100
    try:
        direct_ttft = asyncio.run(ttft_median(sim_port, 100))
        rows.append(f"| direct | {direct_ttft * 1e3:.3f} | — | — | — | — | — | — |")
        ttfts = {name: asyncio.run(ttft_median(port, 100))
                 for name, port in proxies.ports.items()}
        cpu: dict[str, list[float]] = {name: [] for name in proxies.ports}
        per_event: dict[str, list[float]] = {name: [] for name in proxies.ports}
        errors = dict.fromkeys(proxies.ports, 0)
        for _ in range(rounds):
            for name, port in proxies.ports.items():
                results, seconds = proxies.measure_cpu(
                    name, lambda port=port: asyncio.run(many_streams(port, per_round,
                                                                     concurrency)))
                errors[name] += sum(r.error is not None for r in results)
                cpu[name].append(seconds / per_round * 1e6)
                per_event[name].append(seconds / max(sum(map(events, results)), 1) * 1e6)
        for name in proxies.ports:
            ratio = "1.00" if name == "nginx" else _median_and_range([
                w / n for w, n in zip(per_event[name], per_event["nginx"], strict=True)])
            rows.append(f"| {name} | {ttfts[name] * 1e3:.3f} "
                        f"| {(ttfts[name] - direct_ttft) * 1e3:.3f} | {per_round * rounds} "
                        f"| {errors[name]} | {statistics.median(cpu[name]):.0f} "
                        f"| {statistics.median(per_event[name]):.1f} | {ratio} |")
    finally:
        proxies.stop()
        procs.stop(sim)
    return rows


def open_streams(workdir: Path, count: int = 1000) -> list[str]:
    """`count` streams open at once (60 tokens, 50 ms apart: 3 s each)."""
    sim, sim_port = start_sim("--output-tokens", "60", "--token-delay", "0.05")
    proxies = Proxies(workdir, sim_port, "open")
    rows = ["| target | open streams | completed | errors | RSS idle MB | RSS peak MB |",
            "|---|---|---|---|---|---|"]
    try:
        for name, port in proxies.ports.items():
            pid = proxies.procs[name].pid
            idle = procs.rss_mb(pid)
            started = time.monotonic()
            results = asyncio.run(many_streams(port, count, count))
            assert time.monotonic() - started < 60
            ok = sum(r.error is None for r in results)
            rows.append(f"| {name} | {count} | {ok} | {count - ok} | {idle:.0f} "
                        f"| {procs.rss_mb(pid, peak=True):.0f} |")
    finally:
        proxies.stop()
        procs.stop(sim)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="back-to-back nginx/Warden rounds per scenario")
    args = parser.parse_args()
    uvloop.install()
    # Interpreted or compiled (WARDEN_COMPILE=1 pip install .): say which was measured.
    out: list[str] = [f"Warden's data path: {compiled.describe()}", ""]
    print(out[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        workdir = Path(tmp)
        for title, scenario in (  # each printed as soon as it is measured
                ("Non-streaming, small bodies (wrk, 1 thread)",
                 lambda: non_streaming(workdir, args.seconds, args.rounds)),
                ("Streaming: 20 chunks, 10 ms apart", lambda: streaming(workdir, args.rounds)),
                ("1,000 concurrent open streams", lambda: open_streams(workdir))):
            rows = scenario()
            block = [f"### {title}", "", *rows, ""]
            print("\n".join(block), flush=True)
            out += block
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "proxy.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
