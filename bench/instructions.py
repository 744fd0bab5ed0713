"""Instructions per proxied request and per relayed SSE chunk, counted, not timed.

Wall-clock benchmarks on a shared VM move by ±10% from run to run; an instruction count does
not (callgrind runs the same binary on the same input to the same total). This drives the
same protocol objects as `bench.hot_path` for two round counts under callgrind and prints the
difference per round, so the fixed start-up cost cancels out. `--opcodes` instead counts the
bytecodes each function executes per request (sys.settrace), to show where the interpreter's
share goes. Run:

    python -m bench.instructions            # needs valgrind (Debian package)
    python -m bench.instructions --opcodes
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import uvloop

from bench.hot_path import Rig
from build_support.training import (
    KEYED,
    KEYED_REQUEST,
    LEASED,
    LIMITED,
    PROMPT_REQUEST,
    SDK_REQUEST,
    SSE_CHUNK,
    lease_in_process,
)
from warden import compiled
from warden.app.wiring import serving
from warden.config.observe_schema import LoopProbeSpec
from warden.observe.loop_probe import LoopProbe
from warden.run import settle_heap

# What a round is: a non-streaming request (wrk's headers, the recorder off; the openai SDK's;
# recorded as shipped, in summary; recorded in full; with the guard off), one relayed SSE
# chunk, or one tick of the event loop's probe (observe.loop_probe: per timer, not per
# request; at 200 ticks a second while busy (loop_probe.interval 5 ms), a request's share
# is ticks/s over requests/s).
# `keyed`: a key required; `limited`: and its limits (rpm, tpm, max_concurrent) counted in the
# memory store, which runs the leased mode's admit and settle without the Redis leases.
# `limited-recorded`: the same with the recorder as shipped (summary): set against
# `key-sent` (the shipped defaults, auth off, on the same request: its key forwarded), it
# counts what bench.tenancy_bench compares (the same client, with and without key and limits
# checked; the response's usage is then parsed once for the recorder and the settlement both).
# `leased-recorded`: the same limits leased from Redis as replicas count them (the store
# answering in process, build_support/training.py), bench.tenancy_bench's `+key+leased`.
# `prompt`: the shipped defaults (the recorder in summary) on a chat request with a ~10 KB
# prompt (build_support/training.py: PROMPT): what a body of a realistic size adds to `summary`.
# `observed`: the shipped defaults (the recorder in summary) with JSON logs, the access log
# and traces sampled at 1% (bench.hot_path.observe_in_process: the lines formatted and
# written to /dev/null, the spans encoded as OTLP protobuf); `observed-all`: at 100%;
# `observed-idle`: on, and no request sampled (what the listeners cost the others).
KINDS = ("request", "sdk", "summary", "recorded", "unguarded", "chunk", "tick", "keyed",
         "limited", "key-sent", "limited-recorded", "leased-recorded", "prompt", "observed",
         "observed-all", "observed-idle")


# The limits' wall clock's step per reading: a limited request reads it about twice (its
# admission, its settlement), so 20 µs is a gateway at ~25,000 requests a second.
CLOCK_STEP = 20e-6


def _steady_clock(rig: Rig) -> None:
    """The limits' wall clock as a loaded gateway sees it (a rig with a limiter; a key with no
    limits never reads it): CLOCK_STEP later at each reading.
    Under callgrind a request takes over a millisecond of real time, so the limiter's reset
    text, kept per millisecond (tenancy/answers.py, ResetTexts), was formatted again on
    nearly every request (~1k instructions, paid about once a millisecond under load), and
    the count moved with callgrind's speed. A C callable (itertools.count's `__next__`), as
    `time.time` is: its call costs about the same. The stages and the limiter read the
    limiter's `clock` at each call (its background leases keep the real one: they are
    granted in the warm-up, before the counted rounds)."""
    limiter = rig.gateway.parts.limiter
    if limiter is None:
        return
    clock = itertools.count(time.time(), CLOCK_STEP).__next__
    limiter.clock = clock


def _rig(kind: str) -> Rig:
    rigs = {"sdk": lambda: Rig(SDK_REQUEST), "recorded": lambda: Rig(recorder="full"),
            "summary": lambda: Rig(recorder="summary"), "unguarded": lambda: Rig(guard=False),
            "prompt": lambda: Rig(PROMPT_REQUEST, recorder="summary"),
            "keyed": lambda: Rig(KEYED_REQUEST, extra=KEYED),
            "limited": lambda: Rig(KEYED_REQUEST, extra=LIMITED),
            "key-sent": lambda: Rig(KEYED_REQUEST, recorder="summary"),
            "limited-recorded": lambda: Rig(KEYED_REQUEST, recorder="summary", extra=LIMITED),
            "leased-recorded": lambda: Rig(KEYED_REQUEST, recorder="summary", extra=LEASED),
            "observed": lambda: Rig(recorder="summary", observe=0.01),
            "observed-all": lambda: Rig(recorder="summary", observe=1.0),
            "observed-idle": lambda: Rig(recorder="summary", observe=1e-9)}
    return rigs.get(kind, Rig)()


class _AtOnce:
    """The loop as the probe sees it, its next tick due at once (`call_soon` for
    `call_later`): a round is a tick, with no timer's wait and no idle turn between two
    (uvloop's own timer, which this leaves out, is a few hundred instructions of C)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop

    def call_later(self, delay: float, callback):
        return self._loop.call_soon(callback)


async def _tick(rounds: int) -> None:
    """The probe's tick as the gateway runs it: its `busy` test (app.wiring.serving), the
    lag's bucket, the scheduler's counters read, the next tick scheduled."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    ended = 100 + rounds
    busy = serving(set(), SimpleNamespace(ended_total=3))  # type: ignore[arg-type]

    def counting() -> bool:
        if probe.ticks >= ended and not done.done():
            done.set_result(None)
        return busy()

    probe = LoopProbe(LoopProbeSpec().interval, busy=counting)  # (the shipped interval)
    probe.start(_AtOnce(loop))  # type: ignore[arg-type]
    await done
    probe.stop()


async def _drive(kind: str, rounds: int) -> None:
    if kind == "tick":
        return await _tick(rounds)
    rig = _rig(kind)
    _steady_clock(rig)
    # (leased: its lease and slots are granted in the warm-up)
    refills = lease_in_process(rig)[1] if kind == "leased-recorded" else None
    for n in range(100):
        rig.one_round()
        if n % 10 == 0:
            await asyncio.sleep(0)
    settle_heap()  # as the gateway's process does once started
    if kind != "chunk":
        for _ in range(rounds):
            rig.one_round()
    else:
        rig.start_stream()
        for _ in range(rounds):
            rig.upstream.data_received(SSE_CHUNK)
            rig.writes.flush()
            rig.client.transport.out.clear()
    if refills is not None:
        refills.cancel()


def callgrind_runs(kind: str, round_counts: tuple[int, ...], folder: Path) -> list[Path]:
    """callgrind's output files (in `folder`) of one run per round count, run side by side
    (one per core)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    outs = [folder / f"callgrind.{kind}.{rounds}.out" for rounds in round_counts]
    runs = [subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              sys.executable, "-m", "bench.instructions", "--run", kind,
                              str(rounds)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for out, rounds in zip(outs, round_counts, strict=True)]
    for run in runs:
        assert run.wait() == 0, f"callgrind failed on {kind}"
    return outs


def _callgrind_totals(kind: str, *round_counts: int) -> list[int]:
    """The total instructions of one run per round count."""
    with tempfile.TemporaryDirectory() as tmp:
        totals = []
        for out in callgrind_runs(kind, round_counts, Path(tmp)):
            summary = re.search(rb"^summary: (\d+)", out.read_bytes(), re.M)
            assert summary is not None, "no summary line in callgrind's output"
            totals.append(int(summary.group(1)))
        return totals


def count_instructions(kind: str, low: int = 200, high: int = 1200) -> float:
    few, many = _callgrind_totals(kind, low, high)
    return (many - few) / (high - low)


async def count_opcodes(kind: str = "request", rounds: int = 200) -> Counter[str]:
    """Bytecodes executed per request (of a kind other than `chunk`), by function."""
    rig = _rig(kind)
    for _ in range(100):
        rig.one_round()
    counts: Counter[str] = Counter()

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[frame.f_code.co_qualname] += 1
        return tracer

    sys.settrace(tracer)
    for _ in range(rounds):
        rig.one_round()
    sys.settrace(None)
    counts.pop("count_opcodes", None)
    return Counter({name: n // rounds for name, n in counts.items()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opcodes", action="store_true")
    parser.add_argument("--kind", choices=KINDS,
                        help="count only this one (quicker, for before/after comparisons)")
    parser.add_argument("--run", nargs=2, metavar=("KIND", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        uvloop.run(_drive(args.run[0], int(args.run[1])))
    elif args.opcodes:
        counts = uvloop.run(count_opcodes(args.kind or "request"))
        print(f"{sum(counts.values())} bytecodes per request")
        for name, n in counts.most_common():
            print(f"{n:6d}  {name}")
    elif args.kind:
        print(f"{count_instructions(args.kind):,.0f} instructions per round ({args.kind}; "
              f"{compiled.describe()})")
    else:
        request = count_instructions("request")
        unguarded = count_instructions("unguarded")
        sdk = count_instructions("sdk")
        summary = count_instructions("summary")
        recorded = count_instructions("recorded")
        chunk = count_instructions("chunk")
        tick = count_instructions("tick")
        print(f"{request:,.0f} instructions per non-streaming request (wrk's 3 header fields; "
              f"{unguarded:,.0f} with the guard off), {sdk:,.0f} with the openai SDK's 17, "
              f"{summary:,.0f} with the flight recorder as shipped (a summary of each "
              f"response), {recorded:,.0f} capturing everything (records rendered, not "
              f"written); {chunk:,.0f} per relayed SSE chunk; {tick:,.0f} per tick of the "
              f"event loop's probe (200 a second while busy, as shipped: {tick / 100:,.0f} a "
              f"request at 20,000 requests/s). The data path ran {compiled.describe()}.")


if __name__ == "__main__":
    main()
