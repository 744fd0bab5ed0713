"""Where Warden's event loop stalls under load: its own probe's figures (the lag histogram and
stalls by cause, read from /metrics before and after each wrk run) beside wrk's latencies.

    python -m bench.loop_stalls [--variant warden] [--conns 1,16,64] [--seconds 5]
                                [--py-spy FILE] [--postgres] [--probe-interval 1ms]

The gateway runs on core 0 as the proxy benchmark runs it (`bench.proxy_bench`, the same
variants), nginx (a fixed small completion) is its backend and wrk its client on core 1.
`--py-spy FILE` records the gateway during the runs (`--idle --nonblocking`, speedscope
format; Python frames only: py-spy cannot read native stacks without pausing the process, and
its pauses would be stalls themselves; the compiled modules show as their callers) to see
what the blamed work was doing; `--postgres` adds the PostgreSQL sink (the test database at
127.0.0.1:5432, a table of its own, dropped after).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench import procs
from bench.nginx_conf import COMPLETION, STATIC_BACKEND, nginx_command
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE, VARIANTS, warden_command
from bench.tail_bench import POSTGRES_DSN, TABLE, drop_table
from bench.wrk import post_script, run_wrk
from warden.observe.loop_probe import LAG_BUCKETS

_SAMPLE = re.compile(r'^(warden_event_loop_\w+?)(?:\{(?:cause|le)="([^"]*)"\})? (\S+)$', re.M)


def read_probe(port: int) -> dict[tuple[str, str], float]:
    """The probe's samples from the gateway's /metrics: (name, cause or le) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(name, label or ""): float(value) for name, label, value in _SAMPLE.findall(text)}


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile `q` (buckets: (le, count), cumulative)."""
    total = buckets[-1][1]
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("inf")


def report(before: dict, after: dict) -> list[str]:
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    buckets = [(bound, delta.get(("warden_event_loop_lag_seconds_bucket", repr(bound)), 0.0))
               for bound in LAG_BUCKETS]
    buckets.append((float("inf"), delta.get(("warden_event_loop_lag_seconds_bucket", "+Inf"),
                                            0.0)))
    ticks = buckets[-1][1]
    lines = [f"  ticks {ticks:.0f}; lag p50 <= {quantile(buckets, 0.5) * 1e3:g} ms, "
             f"p99 <= {quantile(buckets, 0.99) * 1e3:g} ms, "
             f"p99.9 <= {quantile(buckets, 0.999) * 1e3:g} ms"]
    causes = sorted((key[1] for key in delta if key[0] == "warden_event_loop_stalls_total"
                     and delta[key] > 0), key=lambda c: -delta[("warden_event_loop_stall_"
                                                                "seconds_total", c)])
    for cause in causes:
        count = delta[("warden_event_loop_stalls_total", cause)]
        seconds = delta[("warden_event_loop_stall_seconds_total", cause)]
        lines.append(f"  stalls: {cause:16} {count:6.0f}  {seconds * 1e3:8.1f} ms in all, "
                     f"{seconds / count * 1e3:.2f} ms each")
    if not causes:
        lines.append("  stalls: none")
    return lines


def main() -> None:
    parser = gateway_arguments(conns="1,16,64")
    parser.add_argument("--py-spy", dest="py_spy", help="record py-spy into this file")
    args = parser.parse_args()
    variant = chosen_variant(args)
    with tempfile.TemporaryDirectory(prefix="warden-stalls-") as tmp, \
            gateway_on_core(Path(tmp), variant) as (port, gateway):
        workdir = Path(tmp)
        spy = None
        try:
            if args.py_spy:
                spy = subprocess.Popen(["py-spy", "record", "--idle", "--nonblocking", "-f",
                                        "speedscope", "-o", args.py_spy, "-p",
                                        str(gateway.pid)],
                                       stdout=subprocess.DEVNULL)
            script = post_script(workdir, CHAT)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            print(f"{args.variant}{' + postgres' if args.postgres else ''}", flush=True)
            for conns in map(int, args.conns.split(",")):
                before = read_probe(port)
                result = run_wrk(url, script, conns, args.seconds, LOAD_CORE)
                after = read_probe(port)
                print(f"c={conns}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, "
                      f"p99 {result.p99_ms:.3f} ms, errors {result.errors}", flush=True)
                print("\n".join(report(before, after)), flush=True)
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            if args.postgres:
                drop_table()


def gateway_arguments(conns: str) -> argparse.ArgumentParser:
    """The options this benchmark and bench.loop_turns share (`conns`: the default)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="warden", choices=sorted(VARIANTS))
    parser.add_argument("--conns", default=conns)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", action="store_true", help="the PostgreSQL sink on")
    parser.add_argument("--probe-interval", default="1ms",
                        help="the loop probe's interval (the gateway's default is 5ms; 1ms "
                             "sees every stall of 2 ms or more, at a cost in CPU)")
    return parser


def chosen_variant(args: argparse.Namespace) -> str:
    """The settings `gateway_arguments` chose."""
    variant = VARIANTS[args.variant] + f"\nloop_probe: {{{{interval: '{args.probe_interval}'}}}}"
    return with_postgres(variant) if args.postgres else variant


def with_postgres(variant: str) -> str:
    """`variant`'s settings with the PostgreSQL sink added to its recorder mapping (the test
    database, a table of its own: `tail_bench.drop_table` drops it)."""
    return variant.replace("'{dir}'", f"'{{dir}}', postgres: {{{{dsn: '{POSTGRES_DSN}', "
                                      f"table: {TABLE}}}}}", 1)


@contextlib.contextmanager
def gateway_on_core(workdir: Path, variant: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """nginx (a fixed small completion) on the load core, and the gateway (this checkout,
    `variant`'s settings) in front of it on the proxy core, as the proxy benchmark runs them:
    (the gateway's port, its process), both stopped after."""
    backend_port, port = procs.free_port(), procs.free_port()
    backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
        port=backend_port, body=COMPLETION)), LOAD_CORE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    gateway = procs.start(warden_command(workdir, port, backend_port, "stalls", variant),
                          PROXY_CORE, env=env)
    try:
        procs.wait_for_port(backend_port)
        procs.wait_for_port(port)
        yield port, gateway
    finally:
        procs.stop(gateway)
        procs.stop(backend)


if __name__ == "__main__":
    main()
