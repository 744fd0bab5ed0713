"""The event loop's lag: how late the loop was to serve, and, for each stall (a lag of at
least `STALL`), what it was doing.

How it measures: one timer, not per-request work. A tick is due `interval` after the previous
one ran; when it runs, how late it is (its lag) goes into a histogram (exported as
`warden_event_loop_lag_seconds`: loop_metrics.py). A stall of S seconds shows as a lag
between S - interval and S: the probe samples. The interval is short while requests are in
flight (the `loop_probe.interval` setting, 5 ms by default: a stall longer than it by 1 ms is
always seen, a shorter one in proportion to its length) and long when none are
(`IDLE_INTERVAL`). Each tick wakes the loop, and a wake-up is what costs (~50 µs of CPU on a
VM, against ~2 µs for the tick's own work): at 1 ms, 5% of a core while serving, and 8% more
CPU per streamed event in the proxy benchmark; at 5 ms, within that benchmark's noise.
uvloop's timers have a millisecond's resolution, so an unloaded loop shows lags of ~0.1-0.3
ms.

What it was doing: the loop's own work that can hold it in one piece says so (`note(cause,
started)`: one append to a bounded deque, only for a piece longer than `NOTED`): the cyclic
collector (timed by `gc.callbacks`, installed here), the recorder's flush, a scrape's parse,
rendering /metrics, a reload. (Log lines are written by a thread of their own:
observe/logs.py.) The recorder's writer thread, which shares the GIL and the core, notes each
batch with the time it was active (`note_thread`). A stall is blamed on the loop's own noted
work that overlapped at least half of it, the most; else, by the loop thread's scheduling
over it (its time on the CPU and runnable but not running, from /proc/thread-self/
schedstat): on the CPU, `unknown` (work nobody noted, or a long turn of many requests); off
it, the writer thread if it was active over at least half the stall, else `preempted` (the
kernel ran something else) or `waiting` (asleep: the GIL held elsewhere, a blocking call).
Counted by cause, in number and seconds; the last `KEPT` stalls are kept (`recent`) for a
benchmark or a person to read.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Prometheus bucket bounds (le) of the lag histogram. An alert reads its 0.99 quantile over
# these, so the 1, 5, 10, 50, 100 and 500 ms and 1 s bounds stay.
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STALL = 0.001           # a lag this long or longer is a stall, and its cause is looked for
NOTED = 0.0002          # work pieces shorter than this are not noted (they cannot cause one)
IDLE_INTERVAL = 0.02    # between ticks while none are
KEPT = 64               # recent stalls kept
# How long after a stall a note that explains it may still come: another thread notes its
# piece when the piece ends, and on a busy machine it may wait that long for a core first.
LATE_NOTE = 0.1
PENDING = 16            # stalls waiting for a note at most (past it, the oldest is counted)
# The loop's own work, and a thread's beside it (blamed only when the loop was off the CPU).
CAUSES = ("gc_young", "gc_full", "recorder_flush", "scrape_parse", "metrics_render", "reload")
BACKGROUND = ("recorder_writer",)
# When none of the loop's own noted work overlapped a stall, the loop thread's scheduling
# over it (/proc/thread-self/schedstat, read each tick: one pread) says which of these it was.
UNKNOWN = "unknown"      # the loop ran (on CPU most of the stall): work nobody noted
PREEMPTED = "preempted"  # runnable, but the CPU ran another process or thread
WAITING = "waiting"      # asleep: the GIL held by another thread, a blocking call
UNNOTED = (UNKNOWN, PREEMPTED, WAITING)


@dataclass(frozen=True)
class Stall:
    at: float       # when the late tick ran (the probe's clock)
    lag: float      # seconds
    cause: str
    overlap: float  # seconds of the blamed work within the stall's window (0: unknown)


Note = Callable[[str, float], None]


class LoopProbe:
    def __init__(self, busy_interval: float, busy: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.perf_counter,
                 idle_interval: float = IDLE_INTERVAL):
        """`busy()`: whether requests are in flight (then ticks come every `busy_interval`,
        the `loop_probe.interval` setting; every `idle_interval` when none are)."""
        self.clock = clock
        self._busy = busy
        self._intervals = (idle_interval, busy_interval)
        self.counts = [0] * (len(LAG_BUCKETS) + 1)  # per bucket, not cumulative; +Inf last
        self.lag_sum = 0.0
        self.ticks = 0
        self.stalls = dict.fromkeys((*CAUSES, *BACKGROUND, *UNNOTED), 0)
        self.stall_seconds = dict.fromkeys((*CAUSES, *BACKGROUND, *UNNOTED), 0.0)
        self.recent: deque[Stall] = deque(maxlen=KEPT)
        # Work pieces noted since (about) the last tick: (cause, started, ended, a thread's
        # active seconds in it, or -1 for the loop's own). Bounded: a
        # flood of pieces between two ticks keeps the newest.
        self._pieces: deque[tuple[str, float, float, float]] = deque(maxlen=256)
        self._gc_started = 0.0
        # Stalls no noted piece overlapped yet: (lag, window start, window end, the cause if
        # none comes), oldest first.
        self._pending: deque[tuple[float, float, float, str]] = deque()
        self._schedstat: int | None = None  # (opened by the loop's thread, at start)
        self._usage = b""
        self._last = 0.0
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what the work that may stall the loop calls ---------------------------------------

    def note(self, cause: str, started: float) -> None:
        """A piece of the loop's own work, `cause`, ran from `started` (this probe's clock)
        until now."""
        ended = self.clock()
        if ended - started >= NOTED:
            self._pieces.append((cause, started, ended, -1.0))

    def note_thread(self, cause: str, started: float, active: float) -> None:
        """A piece of another thread's work ran from `started` until now, that thread
        running or runnable for `active` seconds of it (asleep, in a `write`, it holds
        neither the GIL nor the core; runnable but preempted, it may hold the GIL). From
        that thread (a deque's append is atomic); noted however short."""
        self._pieces.append((cause, started, self.clock(), active))

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = self.clock()
        else:
            self.note("gc_full" if info.get("generation") == 2 else "gc_young",
                      self._gc_started)

    # -- the ticks -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        gc.callbacks.append(self._on_gc)
        try:  # (Linux with schedstats; elsewhere every unexplained stall is UNKNOWN)
            self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            self._usage = self._read_usage()
        except OSError:
            self._schedstat = None
        self._last = self.clock()
        self._schedule(self._last)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None
        self._loop = None

    def _schedule(self, now: float) -> None:
        interval = self._intervals[self._busy()]
        self._due = now + interval
        assert self._loop is not None
        self._timer = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        now = self.clock()
        try:  # (whatever happens in it, the probe ticks on: a stopped probe shows no stalls)
            lag = max(now - self._due, 0.0)
            usage, self._usage = self._usage, self._read_usage()
            self.observe(lag, now, self._unnoted(lag, now - self._last, usage, self._usage)
                         if lag >= STALL else UNKNOWN)
        finally:
            self._last = now
            self._schedule(now)

    @staticmethod
    def _unnoted(lag: float, window: float, before: bytes, after: bytes) -> str:
        """What a stall of `lag` in a `window` between two ticks was, by the loop thread's
        time on the CPU and waiting for it (schedstat's first two fields, in ns; UNKNOWN
        when they cannot be read)."""
        if not before or not after:
            return UNKNOWN
        (cpu, queued), (cpu_after, queued_after) = before.split()[:2], after.split()[:2]
        off_cpu = window - (int(cpu_after) - int(cpu)) * 1e-9
        if off_cpu < lag / 2:
            return UNKNOWN
        return PREEMPTED if (int(queued_after) - int(queued)) * 1e-9 >= off_cpu / 2 \
            else WAITING

    def _read_usage(self) -> bytes:
        """The loop thread's schedstat line (read each tick, parsed only for a stall)."""
        return os.pread(self._schedstat, 64, 0) if self._schedstat is not None else b""

    def observe(self, lag: float, now: float, unnoted: str = UNKNOWN) -> None:
        """One tick's lag. A stall's cause is looked for among the pieces noted so far; if
        none overlaps it, again at each tick for `LATE_NOTE` seconds (work in another thread,
        or the piece that the stall was, is noted when it ends, which can be after this
        tick: later still when that thread then waits for a core)."""
        index = 0
        for bound in LAG_BUCKETS:
            if lag <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.lag_sum += lag
        self.ticks += 1
        if self._pending:
            self._settle(now)
        if lag >= STALL:
            cause, overlap = self._culprit(lag, self._last, now, unnoted)
            if overlap == 0.0:  # perhaps noted after this tick: look again at the next ones
                if len(self._pending) >= PENDING:
                    self._settle(now, self._pending[0])   # the oldest, counted as it is
                self._pending.append((lag, self._last, now, unnoted))
            else:
                self._count(lag, self._last, now, cause, overlap)
        self._forget(self._pending[0][1] if self._pending else now)

    def _settle(self, now: float,
                forced: tuple[float, float, float, str] | None = None) -> None:
        """Counts each waiting stall that a noted piece now explains, or that waited
        `LATE_NOTE`, or that is `forced` (then by what explains it now: its unnoted cause, if
        nothing)."""
        waiting: deque[tuple[float, float, float, str]] = deque()
        for stall in self._pending:
            lag, start, end, unnoted = stall
            cause, overlap = self._culprit(lag, start, end, unnoted)
            if overlap > 0.0 or now - end >= LATE_NOTE or stall is forced:
                self._count(lag, start, end, cause, overlap)
            else:
                waiting.append(stall)
        self._pending = waiting

    def _culprit(self, lag: float, start: float, end: float,
                 unnoted: str) -> tuple[str, float]:
        """What held the loop for `lag` in (start, end): the loop's own noted work that
        overlapped it most; else, if the loop was off the CPU (`unnoted` is not UNKNOWN),
        another thread's work that was active over it (it held the GIL or the core); else
        `unnoted`. A piece accounts for a stall only if it overlapped at least half of it (a
        short piece in the same window did not cause a long stall), and a thread's piece
        only if its active time, spread over the piece, does."""
        mine, theirs = (unnoted, 0.0), (unnoted, 0.0)
        # (A copy, taken at once under the GIL: the writer thread and the collector's
        # callbacks append meanwhile, and a deque changed while iterated raises.)
        for cause, started, ended, cpu in tuple(self._pieces):
            overlap = min(ended, end) - max(started, start)
            if cpu >= 0:  # another thread's
                if ended > started:
                    overlap *= min(cpu / (ended - started), 1.0)
                if overlap >= lag / 2 and overlap > theirs[1]:
                    theirs = (cause, overlap)
            elif overlap >= lag / 2 and overlap > mine[1]:
                mine = (cause, overlap)
        if mine[1] > 0 or unnoted == UNKNOWN:
            return mine
        return theirs

    def _count(self, lag: float, start: float, end: float, cause: str, overlap: float) -> None:
        self.stalls[cause] = self.stalls.get(cause, 0) + 1
        self.stall_seconds[cause] = self.stall_seconds.get(cause, 0.0) + lag
        self.recent.append(Stall(end, lag, cause, overlap))

    def _forget(self, before: float) -> None:
        """Drop the pieces that ended before `before` (no stall left to blame needs them)."""
        pieces = self._pieces
        while pieces and pieces[0][2] < before:
            pieces.popleft()

    def cumulative(self) -> list[tuple[str, int]]:
        """The histogram's buckets as Prometheus wants them: (le, count up to it)."""
        out, running = [], 0
        for bound, count in zip((*LAG_BUCKETS, None), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound is None else repr(bound), running))
        return out

