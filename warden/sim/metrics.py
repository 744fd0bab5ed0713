"""A node's /metrics, with vLLM's metric names, types and labels (prometheus_client renders
the same text format vLLM's does). A restarted node gets a fresh set: counters reset, as a
restarted vLLM's do."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from warden.sim.engine import SimEngine

# vLLM's own bucket boundaries for these histograms (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class NodeMetrics:
    """Implements the engine's `EngineEvents`; reads gauges from the engine at scrape time."""

    def __init__(self, model: str):
        self.registry = CollectorRegistry()
        labels = {"engine": "0", "model_name": model}
        names = ["engine", "model_name"]
        r = self.registry
        self._running = Gauge("vllm:num_requests_running", "Number of requests in model "
                              "execution batches.", names, registry=r).labels(**labels)
        self._waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be "
                              "processed.", names, registry=r).labels(**labels)
        self._kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent "
                         "usage.", names, registry=r).labels(**labels)
        self.preemptions = Counter("vllm:num_preemptions", "Cumulative number of preemption "
                                   "from the engine.", names, registry=r).labels(**labels)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens "
                                     "processed.", names, registry=r).labels(**labels)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation "
                                         "tokens processed.", names, registry=r).labels(**labels)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          [*names, "finished_reason"], registry=r)
        self.success = {reason: success.labels(**labels, finished_reason=reason)
                        for reason in ("stop", "length", "abort", "error", "repetition")}
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first "
                              "token in seconds.", names, buckets=TTFT_BUCKETS,
                              registry=r).labels(**labels)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request "
                             "latency in seconds.", names, buckets=E2E_BUCKETS,
                             registry=r).labels(**labels)

    def watch(self, engine: SimEngine) -> None:
        """Read the gauges from `engine` at every scrape."""
        self._running.set_function(lambda: len(engine.running))
        self._waiting.set_function(lambda: len(engine.waiting))
        self._kv.set_function(
            lambda: min(1.0, len(engine.running) / engine.profile.max_num_seqs))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- EngineEvents ----------------------------------------------------------------------

    def prompt(self, tokens: int) -> None:
        self.prompt_tokens.inc(tokens)

    def first_token(self, ttft: float) -> None:
        self.ttft.observe(ttft)

    def token(self) -> None:
        self.generation_tokens.inc()

    def finished(self, reason: str, e2e: float) -> None:
        self.success[reason].inc()
        if reason != "abort":
            self.e2e.observe(e2e)
