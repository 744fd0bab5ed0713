"""What API keys and limits cost: the same gateway (shipped defaults) without them, with a key
required, and with a key and its limits counted in Redis (leased, then exact), side by side in
one run, each pinned to core 0, wrk and the backend on core 1. Run:

    python -m bench.tenancy_bench [--seconds 3] [--rounds 20]

Needs nginx and wrk (Debian packages) and Redis at 127.0.0.1:6379. The limits are set far
above what the run reaches, so every request is admitted and counted: the figures are the
cost of the check, not of refusals. Prints a table and writes bench/results/tenancy.md.

The client is the same for every variant: it sends its key (`Authorization: Bearer ...`), as
every OpenAI client does, and the gateway without auth forwards it. The ratios are to that
gateway, so they count what checking the key and the limits costs, not what one more header
field costs a parser. `warden, no key sent` (the client without the header) shows the field's
own cost beside them. Twenty rounds of three seconds (~13 minutes): on a noisy VM a median of
ten moves by ~0.08 from run to run, as much as the differences it is read for.
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
from bench.wrk import WrkResult, post_script, run_wrk

KEY = "wk-bench-key-000000000000000000001"
# (Each is formatted once more by proxy_bench.warden_command, with `dir`: braces doubled.)
AUTH = "auth: {{mode: required, keys: [{{id: bench, value: '" + KEY + "'LIMITS}}]}}"
LIMITS = ", limits: {{rpm: 1000000000, tpm: 1000000000000, max_concurrent: 100000}}"
REDIS = "rate_limits: {{store: redis, mode: MODE, key_prefix: 'warden-bench:RUN:'}}"
RECORDER = "recorder: {{dir: '{dir}'}}"

# Each changes one thing from the one before it (the first: the client sends no key).
NO_KEY = "warden, no key sent"
VARIANTS = {
    NO_KEY: RECORDER,
    "warden": RECORDER,
    "+key": RECORDER + "\n" + AUTH.replace("LIMITS", ""),
    "+key+leased": "\n".join((RECORDER, AUTH.replace("LIMITS", LIMITS),
                              REDIS.replace("MODE", "leased"))),
    "+key+exact": "\n".join((RECORDER, AUTH.replace("LIMITS", LIMITS),
                             REDIS.replace("MODE", "exact"))),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        backend_port = procs.free_port()
        backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
            port=backend_port, body=COMPLETION)), LOAD_CORE)
        procs.wait_for_port(backend_port)
        ports = {name: procs.free_port() for name in VARIANTS}
        files = {name: f"v{n}" for n, name in enumerate(VARIANTS)}   # (names for files)
        gateways = {name: procs.start(warden_command(
            workdir, ports[name], backend_port, files[name], variant.replace("RUN", run)),
            PROXY_CORE) for name, variant in VARIANTS.items()}
        scripts = {name: post_script(workdir, CHAT, {} if name == NO_KEY else
                                     {"Authorization": f"Bearer {KEY}"}, files[name])
                   for name in VARIANTS}
        try:
            for port in ports.values():
                procs.wait_for_port(port)
            rows = measure(ports, scripts, {name: proc.pid for name, proc in
                                            gateways.items()},
                           args.seconds, args.rounds)
        finally:
            for proc in (*gateways.values(), backend):
                procs.stop(proc)
    table = "\n".join(rows)
    print(table)
    out = Path(__file__).parent / "results" / "tenancy.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")


def measure(ports: dict[str, int], scripts: dict[str, Path], pids: dict[str, int],
            seconds: float, rounds: int) -> list[str]:
    """Rounds interleaved (the VM's speed drifts), the order rotated each round: per
    concurrency, each variant's median round, and the median of its per-round ratios to the
    plain gateway: of requests a second, and of requests per CPU second of the gateway's
    process (from /proc: time the VM gave to others is not in it, so it moves less from
    round to round than the rate does)."""
    rows = ["| variant | conc. | req/s | vs warden (range) | CPU µs/req | requests per CPU "
            "second, vs warden (range) | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|---|---|---|"]
    for conns in (16, 64):
        runs: dict[str, list[tuple[WrkResult, float]]] = {name: [] for name in ports}
        names = list(ports)
        for round_ in range(rounds):
            # (Each round starts one variant later: in a fixed order, a variant always ran
            # at the same point of the VM's slower and faster spells, and its ratio showed
            # where it stood in the order as much as what it cost.)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                port = ports[name]
                before = procs.cpu_seconds(pids[name])
                result = run_wrk(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 scripts[name], conns, seconds, LOAD_CORE)
                runs[name].append((result, (procs.cpu_seconds(pids[name]) - before)
                                   / max(1, result.requests)))
        for name, results in runs.items():
            middle = sorted(results, key=lambda r: r[0].rps)[len(results) // 2][0]
            pairs = list(zip(results, runs["warden"], strict=True))
            rates = [r.rps / base.rps for (r, _), (base, _) in pairs]
            cpus = [base_cpu / cpu for (_, cpu), (_, base_cpu) in pairs if cpu > 0]
            cpu_us = statistics.median(cpu for _, cpu in results) * 1e6
            rows.append(f"| {name} | {conns} | {middle.rps:,.0f} | {_ratio(rates)} | "
                        f"{cpu_us:.1f} | {_ratio(cpus)} | {middle.p50_ms:.3f} | "
                        f"{middle.p99_ms:.3f} | {middle.errors} |")
    return rows


def _ratio(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}..{max(ratios):.2f})"


if __name__ == "__main__":
    main()
