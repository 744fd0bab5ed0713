"""Logs and traces on against off: throughput of the same gateway with JSON logs, the access
log sampled at 1% and tracing sampled at 1% (exported with OTLP over HTTP to a collector
stand-in that decodes nothing), side by side with all of them off, in the same run.

Both gateways run the shipped defaults otherwise (guard on, flight recorder on), pinned to the
proxy core; wrk, the backend (nginx, a static completion) and the collector share the other
core. Each round runs both, back to back (off first, then on first in the next round), so
each pair shares the machine's state; the figure is the median of the per-round ratios
(on / off), with their range. The target is ≥ 0.95. Run:

    python -m bench.observe_bench [--seconds 5] [--rounds 3] [--connections 16]
                                  [--only logs|traces]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import procs
from bench.nginx_conf import COMPLETION, STATIC_BACKEND, nginx_command
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE, warden_command
from bench.wrk import WrkResult, post_script, run_wrk
from warden import compiled

OFF = "recorder: {{dir: '{dir}'}}"
LOGS = "\nlogging: {{format: json, access_log: {{enabled: true, sample: 0.01}}}}"
TRACES = ("\ntracing: {{enabled: true, sample: 0.01, "
          "endpoint: 'http://127.0.0.1:{collector}/v1/traces'}}")
# `--only logs` or `--only traces` measures one of them against off (where a cost comes from).
VARIANTS = {"off": OFF, "on (1%)": OFF + LOGS + TRACES}
ONLY = {"logs": OFF + LOGS, "traces": OFF + TRACES}


def collector(port: int) -> None:
    """An OTLP/HTTP endpoint that reads each export and answers 200 (run as a process)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def measure(workdir: Path, seconds: float, rounds: int, connections: int,
            variants: dict[str, str] = VARIANTS) -> list[str]:
    backend_port, collector_port = procs.free_port(), procs.free_port()
    backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
        port=backend_port, body=COMPLETION)), LOAD_CORE)
    sink = procs.start([sys.executable, "-m", "bench.observe_bench", "--collector",
                        str(collector_port)], LOAD_CORE)
    ports = {name: procs.free_port() for name in variants}
    gateways = {name: procs.start(warden_command(
        workdir, ports[name], backend_port, f"observe-{n}",
        variant.replace("{collector}", str(collector_port))), PROXY_CORE)
        for n, (name, variant) in enumerate(variants.items())}
    script = post_script(workdir, CHAT)
    runs: dict[str, list[tuple[WrkResult, float]]] = {name: [] for name in variants}
    try:
        for port in (backend_port, collector_port, *ports.values()):
            procs.wait_for_port(port)
        for n in range(rounds):  # (the order alternates: neither always goes first)
            for name, port in list(ports.items())[::1 if n % 2 == 0 else -1]:
                pid = gateways[name].pid
                before = procs.cpu_seconds(pid)
                result = run_wrk(f"http://127.0.0.1:{port}/v1/chat/completions", script,
                                 connections, seconds, LOAD_CORE)
                runs[name].append((result, procs.cpu_seconds(pid) - before))
    finally:
        for proc in (*gateways.values(), sink, backend):
            procs.stop(proc)
    on_name = list(variants)[1]
    ratios = [on.rps / off.rps for (off, _), (on, _) in
              zip(runs["off"], runs[on_name], strict=True)]
    rows = [f"Warden's data path: {compiled.describe()}; wrk -c{connections}, {seconds:.0f} s "
            f"x {rounds} rounds", "",
            "| logs and traces | req/s (median round) | CPU µs/req | p99 ms | errors |",
            "|---|---|---|---|---|"]
    for name, results in runs.items():
        result, cpu = sorted(results, key=lambda r: r[0].rps)[len(results) // 2]
        rows.append(f"| {name} | {result.rps:,.0f} | {cpu / max(result.requests, 1) * 1e6:.1f}"
                    f" | {result.p99_ms:.2f} | {sum(r.errors for r, _ in results)} |")
    rows += ["", f"on / off: **{statistics.median(ratios):.3f}** "
             f"({min(ratios):.3f}..{max(ratios):.3f}) (target ≥ 0.95)"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="off/on rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=sorted(ONLY), help="one of them on, against off")
    parser.add_argument("--collector", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collector:
        collector(args.collector)
        return
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        variants = VARIANTS if args.only is None else \
            {"off": OFF, f"{args.only} on (1%)": ONLY[args.only]}
        print("\n".join(measure(Path(tmp), args.seconds, args.rounds, args.connections,
                                variants)))


if __name__ == "__main__":
    main()
