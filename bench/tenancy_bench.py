"""What API keys and limits cost: the same gateway (shipped defaults) without them, with a key
required, and with a key and its limits counted in Redis (leased, then exact), side by side in
one run, each pinned to core 0, wrk and the backend on core 1. Run:

    python -m bench.tenancy_bench [--seconds 5] [--rounds 3]

Needs nginx and wrk (Debian packages) and Redis at 127.0.0.1:6379. The limits are set far
above what the run reaches, so every request is admitted and counted: the figures are the
cost of the check, not of refusals. Prints a table and writes bench/results/tenancy.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from bench import procs
from bench.nginx_conf import COMPLETION, STATIC_BACKEND, nginx_command
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE, warden_command
from bench.wrk import post_script, run_wrk

KEY = "wk-bench-key-000000000000000000001"
# (Each is formatted once more by proxy_bench.warden_command, with `dir`: braces doubled.)
AUTH = "auth: {{mode: required, keys: [{{id: bench, value: '" + KEY + "'LIMITS}}]}}"
LIMITS = ", limits: {{rpm: 1000000000, tpm: 1000000000000, max_concurrent: 100000}}"
REDIS = "rate_limits: {{store: redis, mode: MODE, key_prefix: 'warden-bench:RUN:'}}"
RECORDER = "recorder: {{dir: '{dir}'}}"

# Each changes one thing from the one before it.
VARIANTS = {
    "warden": RECORDER,
    "+key": RECORDER + "\n" + AUTH.replace("LIMITS", ""),
    "+key+leased": "\n".join((RECORDER, AUTH.replace("LIMITS", LIMITS),
                              REDIS.replace("MODE", "leased"))),
    "+key+exact": "\n".join((RECORDER, AUTH.replace("LIMITS", LIMITS),
                             REDIS.replace("MODE", "exact"))),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        backend_port = procs.free_port()
        backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
            port=backend_port, body=COMPLETION)), LOAD_CORE)
        procs.wait_for_port(backend_port)
        ports = {name: procs.free_port() for name in VARIANTS}
        gateways = {name: procs.start(warden_command(
            workdir, ports[name], backend_port, name.replace("+", "-"),
            variant.replace("RUN", run)), PROXY_CORE) for name, variant in VARIANTS.items()}
        scripts = {name: post_script(workdir, CHAT, {} if name == "warden" else
                                     {"Authorization": f"Bearer {KEY}"}, name.strip("+"))
                   for name in VARIANTS}
        try:
            for port in ports.values():
                procs.wait_for_port(port)
            rows = measure(ports, scripts, args.seconds, args.rounds)
        finally:
            for proc in (*gateways.values(), backend):
                procs.stop(proc)
    table = "\n".join(rows)
    print(table)
    out = Path(__file__).parent / "results" / "tenancy.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")


def measure(ports: dict[str, int], scripts: dict[str, Path], seconds: float,
            rounds: int) -> list[str]:
    """Rounds interleaved (the VM's speed drifts): per concurrency, each variant's median
    round, and the median of its per-round ratios to the plain gateway."""
    rows = ["| variant | conc. | req/s | vs warden (range) | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|---|"]
    for conns in (16, 64):
        runs: dict[str, list] = {name: [] for name in ports}
        for _ in range(rounds):
            for name, port in ports.items():
                runs[name].append(run_wrk(f"http://127.0.0.1:{port}/v1/chat/completions",
                                          scripts[name], conns, seconds, LOAD_CORE))
        for name, results in runs.items():
            middle = sorted(results, key=lambda r: r.rps)[len(results) // 2]
            ratios = [r.rps / base.rps for r, base in zip(results, runs["warden"],
                                                          strict=True)]
            rows.append(f"| {name} | {conns} | {middle.rps:,.0f} | "
                        f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}.."
                        f"{max(ratios):.2f}) | {middle.p50_ms:.3f} | {middle.p99_ms:.3f} | "
                        f"{middle.errors} |")
    return rows


if __name__ == "__main__":
    main()
