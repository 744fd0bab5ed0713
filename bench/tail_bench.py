"""Tail latency: nginx, Envoy and Warden side by side in one run, each on one core.

    python -m bench.tail_bench [--seconds 5] [--rounds 3] [--sweep-seconds 3]
                               [--baseline CHECKOUT] [--no-postgres]

Each proxy is pinned to core 0; wrk (one thread) and the backend (nginx returning a fixed
small completion: bench.nginx_conf) share core 1. Targets: `direct` (wrk to the backend),
`nginx` (bench.nginx_conf's proxy), `envoy` (bench.envoy_conf: one worker, the PyPI build
pinned in the `bench` extra), `warden` (the shipped defaults), `warden+full` (the recorder
capturing every response), `warden+pg` (the defaults plus the PostgreSQL sink, into the test
database at 127.0.0.1:5432, a table of its own dropped after), and with `--baseline DIR` the
shipped defaults of another checkout (`warden@base`, to compare two builds in one run).

Per concurrency (1, 16, 64): `--rounds` rounds, each target once per round in turn, so that
each round's targets share the machine's state; a row is the target's median round by p99.
p50, p99 and p99.9 come from wrk's own histogram (a `done` hook: wrk.TAIL_DONE). "added"
is the target's percentile minus the direct connection's at the same concurrency. Then the
highest rate each target holds with p99 under 5 ms: wrk is closed-loop, so the rate is found
by trying 1, 2, 4, ... 128 connections (`--sweep-seconds` each) and keeping the highest
req/s whose p99 was under 5 ms. The targets (docs/benchmarks.md) are checked at
the end. Writes bench/results/tail.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import procs
from bench.envoy_conf import envoy_command
from bench.nginx_conf import COMPLETION, PROXY, STATIC_BACKEND, nginx_command
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE, VARIANTS, warden_command
from bench.wrk import TailResult, run_wrk_tail, tail_script
from warden import compiled

HERE = Path(__file__).resolve().parents[1]
POSTGRES_DSN = os.environ.get("WARDEN_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")
TABLE = "bench_tail_records"
P99_LIMIT_MS = 5.0
SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)


def warden_variants(postgres: bool) -> dict[str, str]:
    variants = {"warden": VARIANTS["warden"], "warden+full": VARIANTS["warden+full"]}
    if postgres:
        variants["warden+pg"] = ("recorder: {{dir: '{dir}', postgres: "
                                 f"{{{{dsn: '{POSTGRES_DSN}', table: {TABLE}}}}}}}}}")
    return variants


class Targets:
    def __init__(self, workdir: Path, backend: int, postgres: bool, baseline: Path | None):
        self.ports: dict[str, int] = {"direct": backend}
        self.procs: dict[str, subprocess.Popen] = {}
        self._start("nginx", lambda port: nginx_command(workdir, "proxy", PROXY.format(
            port=port, upstream=backend)))
        self._start("envoy", lambda port: envoy_command(workdir, "proxy", port, backend))
        for name, variant in warden_variants(postgres).items():
            self._start(name, lambda port, name=name, variant=variant: warden_command(
                workdir, port, backend, name.replace("+", "-"), variant), HERE)
        if baseline is not None:
            self._start("warden@base", lambda port: warden_command(
                workdir, port, backend, "base", VARIANTS["warden"]), baseline)
        for name, port in self.ports.items():
            if name != "direct":
                procs.wait_for_port(port, timeout=30)

    def _start(self, name: str, command, code: Path | None = None) -> None:
        port = procs.free_port()
        argv = command(port)
        if argv is None:
            print(f"({name}: not installed, left out)", flush=True)
            return
        env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
        self.procs[name] = procs.start(argv, PROXY_CORE, env=env)
        self.ports[name] = port

    def stop(self) -> None:
        for proc in self.procs.values():
            procs.stop(proc)


def measure(targets: Targets, script: Path, seconds: float, rounds: int) -> list[str]:
    rows = ["| target | conc. | req/s | p50 ms | p99 ms | p99.9 ms | added p50 / p99 ms "
            "| p99 vs nginx | errors |", "|---|---|---|---|---|---|---|---|---|"]
    p99s: dict[tuple[str, int], float] = {}
    for conns in (1, 16, 64):
        runs: dict[str, list[TailResult]] = {name: [] for name in targets.ports}
        for _ in range(rounds):
            for name, port in targets.ports.items():
                runs[name].append(run_wrk_tail(f"http://127.0.0.1:{port}/v1/chat/completions",
                                               script, conns, seconds, LOAD_CORE))
        median = {name: sorted(results, key=lambda r: r.p99_ms)[len(results) // 2]
                  for name, results in runs.items()}
        direct = median["direct"]
        for name, r in median.items():
            p99s[name, conns] = r.p99_ms
            ratio = ("—" if name == "direct" or "nginx" not in median else
                     f"{statistics.median(w.p99_ms / n.p99_ms for w, n in zip(runs[name], runs['nginx'], strict=True)):.2f}")  # noqa: E501
            added = "—" if name == "direct" else \
                f"{r.p50_ms - direct.p50_ms:.3f} / {r.p99_ms - direct.p99_ms:.3f}"
            rows.append(f"| {name} | {conns} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} "
                        f"| {r.p999_ms:.3f} | {added} | {ratio} | {r.errors} |")
        print("\n".join(rows[-len(median):]), flush=True)
    return [*rows, "", *checks(p99s)]


def checks(p99: dict[tuple[str, int], float]) -> list[str]:
    """The targets, each met or not (on this run)."""
    out = ["Targets:", ""]

    def say(what: str, met: bool) -> None:
        out.append(f"- {'met' if met else 'NOT met'}: {what}")

    names = {name for name, _ in p99}
    if {"warden", "nginx"} <= names:
        for conns in (16, 64):
            say(f"p99 at {conns} within 2x nginx's ({p99['warden', conns]:.2f} against "
                f"{p99['nginx', conns]:.2f} ms)",
                p99["warden", conns] <= 2 * p99["nginx", conns])
    if {"warden", "envoy"} <= names:
        for conns in (16, 64):
            say(f"p99 at {conns} below Envoy's ({p99['warden', conns]:.2f} against "
                f"{p99['envoy', conns]:.2f} ms)", p99["warden", conns] < p99["envoy", conns])
    if "warden" in names:
        added = p99["warden", 1] - p99["direct", 1]
        say(f"added p99 at concurrency 1 under 0.3 ms ({added:.3f} ms)", added < 0.3)
    for variant in ("warden+full", "warden+pg"):
        if variant in names:
            for conns in (1, 16, 64):
                say(f"{variant}'s p99 at {conns} within 1.5x the defaults' "
                    f"({p99[variant, conns]:.2f} against {p99['warden', conns]:.2f} ms)",
                    p99[variant, conns] <= 1.5 * p99["warden", conns])
    return out


def sweep(targets: Targets, script: Path, seconds: float) -> list[str]:
    rows = [f"| target | highest req/s with p99 < {P99_LIMIT_MS:g} ms | at conc. | p99 ms |",
            "|---|---|---|---|"]
    for name, port in targets.ports.items():
        best: tuple[float, int, float] | None = None
        for conns in SWEEP:
            r = run_wrk_tail(f"http://127.0.0.1:{port}/v1/chat/completions", script, conns,
                             seconds, LOAD_CORE)
            if r.p99_ms < P99_LIMIT_MS and (best is None or r.rps > best[0]):
                best = (r.rps, conns, r.p99_ms)
        rows.append(f"| {name} | {best[0]:,.0f} | {best[1]} | {best[2]:.3f} |" if best else
                    f"| {name} | — (p99 >= {P99_LIMIT_MS:g} ms throughout) | — | — |")
        print(rows[-1], flush=True)
    return rows


def drop_table() -> None:
    subprocess.run([sys.executable, "-c", (
        "import asyncio, asyncpg\n"
        "async def main():\n"
        f"    c = await asyncpg.connect({POSTGRES_DSN!r})\n"
        f"    await c.execute('DROP TABLE IF EXISTS {TABLE} CASCADE')\n"
        "    await c.close()\n"
        "asyncio.run(main())")], check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sweep-seconds", type=float, default=3.0)
    parser.add_argument("--baseline", type=Path, help="another checkout's Warden, beside")
    parser.add_argument("--no-postgres", action="store_true", help="leave warden+pg out")
    args = parser.parse_args()
    out = [f"Warden's data path: {compiled.describe()}", ""]
    print(out[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="warden-tail-") as tmp:
        workdir = Path(tmp)
        backend_port = procs.free_port()
        backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
            port=backend_port, body=COMPLETION)), LOAD_CORE)
        procs.wait_for_port(backend_port)
        targets = Targets(workdir, backend_port, not args.no_postgres, args.baseline)
        script = tail_script(workdir, CHAT)
        try:
            for title, scenario in (
                    ("Latency (wrk, 1 thread, closed loop)",
                     lambda: measure(targets, script, args.seconds, args.rounds)),
                    (f"Highest rate with p99 under {P99_LIMIT_MS:g} ms",
                     lambda: sweep(targets, script, args.sweep_seconds))):
                print(f"### {title}\n", flush=True)
                out += [f"### {title}", "", *scenario(), ""]
        finally:
            targets.stop()
            procs.stop(backend)
            if not args.no_postgres:
                drop_table()
    start = out.index("Targets:")
    print("\n".join(out[start:out.index("", start + 2)]), flush=True)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "tail.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
