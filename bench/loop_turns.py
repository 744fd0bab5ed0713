"""What the gateway's event loop does in its longest turns, from the kernel's side (perf).

    python -m bench.loop_turns [--variant warden] [--conns 16] [--seconds 5] [--postgres]

The gateway runs on core 0 in front of nginx, wrk on core 1, as `bench.loop_stalls` runs
them. While wrk runs, perf records every event on core 0 (`-a -C 0`, CLOCK_MONOTONIC): the
loop thread's `epoll_pwait` entries and exits (a turn is the time from one exit to the next
entry: the loop serving what the poll returned), a CPU-clock sample every 50 µs, soft
interrupts, and every context switch on the core. Each turn is then explained from what
happened in it: how much of it the loop was on the CPU (its samples), how long the kernel
ran soft interrupts on its core, and who ran while the loop was switched out though
runnable (another process, the gateway's own threads, a kernel thread); and the functions
its samples fell in (the kernel's, libpython's, the compiled data path's by name).

The event loop's own probe (`warden_event_loop_stalls_total`) tells *that* the loop was late
and blames what it can see from inside; this tells what the core was doing meanwhile, which
the probe cannot. Needs perf (Debian `linux-perf`) and root, or perf_event_paranoid <= -1.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.loop_stalls import chosen_variant, gateway_arguments, gateway_on_core
from bench.proxy_bench import CHAT, LOAD_CORE, PROXY_CORE
from bench.tail_bench import drop_table
from bench.wrk import post_script, run_wrk

SAMPLE_NS = 50_000  # the CPU clock's sampling period
EVENTS = ("syscalls:sys_enter_epoll_pwait", "syscalls:sys_exit_epoll_pwait",
          "irq:softirq_entry", "irq:softirq_exit", "sched:sched_switch")
BUCKETS_MS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 5.0), (5.0, float("inf")))
_LINE = re.compile(r"\s*(\d+)\s+\[\d+\]\s+([\d.]+):\s+(?:\d+\s+)?([\w:-]+):\s*(.*)")
_SWITCH = re.compile(r"prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) "
                     r"next_prio=(\d+)")


@dataclass
class Turn:
    start: float
    end: float = 0.0
    samples: list[str] = field(default_factory=list)   # the symbol of each CPU-clock sample
    softirq: float = 0.0                                # seconds of soft interrupts in it
    others: dict[str, float] = field(default_factory=dict)  # who ran while it was out


def record(pid: int, seconds: float, out: Path, load) -> None:
    """perf on the proxy core while `load()` runs (it should last `seconds`)."""
    events = [arg for name in EVENTS for arg in ("-e", name)]
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-C", str(PROXY_CORE), "-k",
                             "CLOCK_MONOTONIC", "-o", str(out), *events, "-e", "cpu-clock",
                             "-c", str(SAMPLE_NS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # perf is set up
    try:
        load()
    finally:
        perf.send_signal(2)
        perf.wait(timeout=60)


def read_turns(data: Path, pid: int, threads: set[int]) -> list[Turn]:
    """The loop thread's turns (its thread id is the process's), each explained. `threads`:
    the gateway's other threads (named apart from other processes')."""
    text = subprocess.run(["perf", "script", "-i", str(data), "-F",
                           "tid,cpu,time,event,ip,sym,dso,trace"], capture_output=True,
                          text=True, check=True).stdout
    turns: list[Turn] = []
    turn: Turn | None = None
    switched_out: float | None = None
    running = ""  # who the core runs while the loop is switched out
    blocked = False
    soft_from: float | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        tid, now, event, rest = int(match[1]), float(match[2]), match[3], match[4]
        if event == "sched:sched_switch":
            switch = _SWITCH.search(rest)
            if switch is None:
                continue
            if turn is not None and switched_out is not None and running:
                turn.others[running] = turn.others.get(running, 0.0) + now - switched_out
                switched_out = now
            following = _who(switch[3], int(switch[4]), int(switch[5]), threads)
            if int(switch[1]) == pid:  # preempted (R), or blocked (the GIL, a system call)
                switched_out = now
                blocked = not switch[2].startswith("R")
                running = following + (" (the loop blocked)" if blocked else "")
            elif int(switch[4]) == pid:
                switched_out, running = None, ""
            elif switched_out is not None:
                running = following + (" (the loop blocked)" if blocked else "")
            continue
        if event.startswith("irq:softirq_"):
            if event.endswith("entry"):
                soft_from = now
            elif soft_from is not None and turn is not None:
                turn.softirq += now - soft_from
                soft_from = None
            continue
        if tid != pid:
            continue
        if event == "syscalls:sys_exit_epoll_pwait":
            turn = Turn(now)
        elif event == "syscalls:sys_enter_epoll_pwait" and turn is not None:
            turn.end = now
            turns.append(turn)
            turn = None
        elif event == "cpu-clock" and turn is not None:
            turn.samples.append(_symbol(rest))
    return turns


def _who(comm: str, tid: int, prio: int, threads: set[int]) -> str:
    if tid in threads:
        return f"the gateway's thread {tid} (nice {prio - 120})"
    return "idle" if tid == 0 else comm


def _symbol(sample: str) -> str:
    """A sample's function (`ip symbol (dso)`), or its library when perf has no name."""
    parts = sample.split(None, 1)
    if len(parts) < 2:
        return "?"
    symbol, _, dso = parts[1].rpartition(" (")
    if symbol in ("", "[unknown]"):
        return Path(dso.rstrip(")")).name or "?"
    return symbol


def report(turns: list[Turn]) -> list[str]:
    lengths = sorted((t.end - t.start) * 1e3 for t in turns)
    if not lengths:
        return ["no turns recorded (is perf allowed? is the loop on epoll_pwait?)"]
    n = len(lengths)
    lines = [f"{n} turns: p50 {lengths[n // 2]:.3f} ms, p99 {lengths[int(n * 0.99)]:.3f}, "
             f"p99.9 {lengths[int(n * 0.999)]:.3f}, longest {lengths[-1]:.3f}"]
    for low, high in BUCKETS_MS:
        chosen = [t for t in turns if low <= (t.end - t.start) * 1e3 < high]
        if not chosen:
            continue
        seconds = sum(t.end - t.start for t in chosen)
        on_cpu = sum(len(t.samples) for t in chosen) * SAMPLE_NS * 1e-9
        others: defaultdict[str, float] = defaultdict(float)
        for t in chosen:
            for who, spent in t.others.items():
                others[who] += spent
        symbols = Counter(symbol for t in chosen for symbol in t.samples)
        total = sum(symbols.values()) or 1
        lines.append(f"[{low:g}, {high:g}) ms: {len(chosen)} turns, {seconds * 1e3:.0f} ms; "
                     f"the loop on the CPU {on_cpu / seconds:.0%}, soft interrupts "
                     f"{sum(t.softirq for t in chosen) / seconds:.0%}")
        if others:
            lines.append("    switched out for: " + ", ".join(
                f"{who} {spent * 1e3:.1f} ms" for who, spent in
                sorted(others.items(), key=lambda kv: -kv[1])[:5]))
        lines.append("    samples in: " + ", ".join(
            f"{symbol} {count / total:.0%}" for symbol, count in symbols.most_common(8)))
    return lines


def main() -> None:
    args = gateway_arguments(conns="16").parse_args()
    conns = int(args.conns)
    variant = chosen_variant(args)
    with tempfile.TemporaryDirectory(prefix="warden-turns-") as tmp, \
            gateway_on_core(Path(tmp), variant) as (port, gateway):
        workdir = Path(tmp)
        script = post_script(workdir, CHAT)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        run_wrk(url, script, conns, 2, LOAD_CORE)  # warm
        results = []
        threads = {int(tid) for tid in os.listdir(f"/proc/{gateway.pid}/task")}
        record(gateway.pid, args.seconds, workdir / "perf.data", lambda: results.append(
            run_wrk(url, script, conns, args.seconds, LOAD_CORE)))
        [result] = results
        print(f"{args.variant}, c={conns}: {result.rps:,.0f} req/s, p50 "
              f"{result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms (under perf)")
        threads.discard(gateway.pid)
        print("\n".join(report(read_turns(workdir / "perf.data", gateway.pid, threads))))
    if args.postgres:
        drop_table()


if __name__ == "__main__":
    main()
