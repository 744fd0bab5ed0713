"""Where a Warden variant's CPU goes, per thread: the event loop and the recorder's writer.

Starts nginx as the backend (core 1) and each variant of `bench.proxy_bench` alone on the
proxy core, drives it with wrk, and reads each of its threads' user and system time from
/proc before and after: µs per request for each thread, and minor page faults and context
switches. It answers "is this cost on the loop or on the writer?", which a whole-process
figure cannot. Run:

    python -m bench.thread_cpu [--variants warden,warden+full] [--seconds 5] [--conns 16]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.nginx_conf import COMPLETION, STATIC_BACKEND, nginx_command
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE, VARIANTS, warden_command
from bench.wrk import post_script, run_wrk
from warden import compiled

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ThreadTimes:
    name: str
    user: float
    system: float
    faults: int
    switches: int


def thread_times(pid: int) -> dict[int, ThreadTimes]:
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        switches = sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", status))
        times[int(tid)] = ThreadTimes(name, int(fields[11]) / _TICKS, int(fields[12]) / _TICKS,
                                      int(fields[7]), switches)
    return times


def measure(workdir: Path, backend_port: int, variant: str, seconds: float,
            conns: int) -> str:
    port = procs.free_port()
    proc = procs.start(warden_command(workdir, port, backend_port, variant.replace("+", "-"),
                                      VARIANTS[variant]), PROXY_CORE)
    try:
        procs.wait_for_port(port)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        script = post_script(workdir, CHAT)
        run_wrk(url, script, conns, 1, LOAD_CORE)  # warm up
        before = thread_times(proc.pid)
        result = run_wrk(url, script, conns, seconds, LOAD_CORE)
        after = thread_times(proc.pid)
    finally:
        procs.stop(proc)
    requests = max(result.requests, 1)
    parts = [f"{variant:15s} {result.rps:8,.0f} req/s"]
    for tid, end in sorted(after.items()):
        start = before.get(tid, ThreadTimes(end.name, 0, 0, 0, 0))
        user = (end.user - start.user) / requests * 1e6
        system = (end.system - start.system) / requests * 1e6
        if user + system < 0.05:
            continue
        role = "loop" if tid == proc.pid else "thread"
        parts.append(f"{role}: user {user:.1f} sys {system:.1f} µs/req, "
                     f"{(end.faults - start.faults) * 1000 / requests:.1f} faults/1000 req, "
                     f"{(end.switches - start.switches) / seconds:.0f} switches/s")
    return " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="warden,warden-norec,warden+full",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"Warden's data path: {compiled.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        backend_port = procs.free_port()
        backend = procs.start(nginx_command(workdir, "backend", STATIC_BACKEND.format(
            port=backend_port, body=COMPLETION)), LOAD_CORE)
        try:
            procs.wait_for_port(backend_port)
            for _ in range(args.rounds):
                for variant in args.variants.split(","):
                    print(measure(workdir, backend_port, variant, args.seconds, args.conns),
                          flush=True)
        finally:
            procs.stop(backend)


if __name__ == "__main__":
    main()
