"""An engine's load, read from its Prometheus `/metrics` text (vLLM's names, current and older).

Rules:
- Only the few families routing needs are read; a line is looked at only if it starts with
  one of their names (the text of a vLLM 0.32 server is ~100 KB, mostly histograms).
- Several engines behind one server (data parallel: an `engine` label each) are summed for
  counts and averaged for the KV-cache usage.
- A signal the text does not carry is `None`, never 0 (the policies degrade on it, visibly).
- Counters become rates between two scrapes: preemptions since the last one, and the prefix
  cache's hit rate over the tokens queried since then. A counter that goes backwards means
  the engine restarted (`restarted`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Each signal's metric names, newest first (vLLM renamed gpu_* to kv_*/plain in 0.10).
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
WAITING = ("vllm:num_requests_waiting",)
RUNNING = ("vllm:num_requests_running",)
PREEMPTIONS = ("vllm:num_preemptions_total",)
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
# Counters that only grow while an engine lives.
MONOTONIC = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")

_WANTED = frozenset((*KV_USAGE, *WAITING, *RUNNING, *PREEMPTIONS, *PREFIX_HITS,
                     *PREFIX_QUERIES, *MONOTONIC))
_PREFIXES = tuple(sorted({name.split("_")[0] for name in _WANTED}))


def read_families(text: str) -> dict[str, list[float]]:
    """The samples of the wanted families, by metric name (one value per label set)."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if space < 0:
            continue
        name = line[:brace] if 0 <= brace < space else line[:space]
        if name not in _WANTED:
            continue
        rest = line[space:] if not 0 <= brace < space else line[line.rfind("}") + 1:]
        try:  # `value [timestamp]`
            found.setdefault(name, []).append(float(rest.split()[0]))
        except (ValueError, IndexError):
            continue  # NaN and friends parse; garbage does not: skip the sample
    return found


def _first(found: dict[str, list[float]], names: tuple[str, ...]) -> list[float] | None:
    for name in names:
        values = found.get(name)
        if values:
            return values
    return None


@dataclass(frozen=True)
class Counters:
    """A scrape's cumulative counters (the next scrape turns them into rates)."""

    preemptions: float | None
    prefix_hits: float | None
    prefix_queries: float | None
    activity: float | None   # sum of the MONOTONIC counters


@dataclass(frozen=True)
class EngineLoad:
    """One backend's load at `at` (time.monotonic()). `None`: the server does not export it."""

    at: float
    kv_usage: float | None          # 0..1
    waiting: float | None
    running: float | None
    preemptions: float | None       # since the previous scrape (None on the first)
    prefix_hit_rate: float | None   # over the tokens queried since the previous scrape
    counters: Counters
    in_flight_at_scrape: int        # this gateway's in-flight count when it was read
    restarted: bool = False         # a counter went backwards since the previous scrape

    def missing(self) -> tuple[str, ...]:
        """The signals this server does not give."""
        return tuple(name for name, value in (
            ("kv_cache", self.kv_usage), ("queue", self.waiting), ("running", self.running),
            ("preemptions", self.counters.preemptions)) if value is None)

    def as_dict(self, now: float) -> dict:
        return {"age": round(now - self.at, 3), "kv_cache_usage": self.kv_usage,
                "waiting": self.waiting, "running": self.running,
                "preemptions": self.preemptions, "prefix_hit_rate": self.prefix_hit_rate,
                "missing": list(self.missing())}


def engine_load(text: str, at: float, in_flight: int,
                previous: EngineLoad | None) -> EngineLoad:
    """The load in one `/metrics` text, with rates against the `previous` scrape."""
    found = read_families(text)
    kv = _first(found, KV_USAGE)
    waiting = _first(found, WAITING)
    running = _first(found, RUNNING)
    preempted = _first(found, PREEMPTIONS)
    hits = _first(found, PREFIX_HITS)
    queries = _first(found, PREFIX_QUERIES)
    activity = [v for name in MONOTONIC for v in found.get(name, ())]
    counters = Counters(sum(preempted) if preempted else None, sum(hits) if hits else None,
                        sum(queries) if queries else None,
                        sum(activity) if activity else None)
    before = previous.counters if previous is not None else None
    restarted = before is not None and any(
        now is not None and then is not None and now < then
        for now, then in ((counters.activity, before.activity),
                          (counters.preemptions, before.preemptions),
                          (counters.prefix_queries, before.prefix_queries)))
    preemptions = hit_rate = None
    if before is not None and not restarted:
        if counters.preemptions is not None and before.preemptions is not None:
            preemptions = counters.preemptions - before.preemptions
        if None not in (counters.prefix_hits, counters.prefix_queries, before.prefix_hits,
                        before.prefix_queries):
            queried = counters.prefix_queries - before.prefix_queries  # type: ignore[operator]
            if queried > 0:
                hit_rate = (counters.prefix_hits - before.prefix_hits) / queried  # type: ignore[operator]
    return EngineLoad(at, sum(kv) / len(kv) if kv else None,
                      sum(waiting) if waiting else None, sum(running) if running else None,
                      preemptions, hit_rate, counters, in_flight, restarted)
