"""A node's /metrics: vLLM's families for the node's version (see `vllm_metrics`), driven by
the engine. prometheus_client renders them, as it does in vLLM, so the text format matches.
A restarted node gets a fresh set: counters reset, as a restarted vLLM's do."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from warden.fleet.versions import parse_version
from warden.sim.engine import SimEngine
from warden.sim.scheduler import Sequence
from warden.sim.vllm_metrics import (
    FAMILIES,
    FIXED_LABEL_VALUES,
    LEGACY_NAMES,
    NEW,
)

_KINDS = {"gauge": Gauge, "counter": Counter, "histogram": Histogram}
# The counters a vLLM V1 engine with a speculative config exports (the sim never drafts).
SPEC_DECODE_COUNTERS = (("spec_decode_num_drafts", "Number of spec decoding drafts."),
                        ("spec_decode_num_draft_tokens", "Number of draft tokens."),
                        ("spec_decode_num_accepted_tokens", "Number of accepted tokens."))
# The finished_reason values vLLM exports from the start: before 0.32.0, and since.
FINISHED_REASONS = {False: ("stop", "length", "abort"),
                    True: ("stop", "length", "abort", "error", "repetition")}


class NodeMetrics:
    """Implements the engine's `EngineEvents`; gauges are read from the engine at scrape."""

    def __init__(self, model: str, version: str, *, legacy_names: bool = False,
                 cache_config: dict[str, str] | None = None, loras: tuple[str, ...] = (),
                 speculative: bool = False):
        self.registry = CollectorRegistry()
        self._loras = loras
        self._engine: SimEngine | None = None
        v = parse_version(version)
        base = {"engine": "0", "model_name": model}
        self._m: dict[str, object] = {}
        for family in FAMILIES:
            if not family.present(v) or family.name == "cache_config_info":
                continue
            name = LEGACY_NAMES.get(family.name, family.name) if legacy_names else family.name
            kwargs = {"buckets": family.buckets} if family.kind == "histogram" else {}
            fixed = base if family.per_engine else {"model_name": model}
            metric = _KINDS[family.kind](f"vllm:{name}", family.doc,
                                         [*fixed, *family.labels], registry=self.registry,
                                         **kwargs)
            for value in FIXED_LABEL_VALUES.get(family.name, ()):
                metric.labels(**fixed, **{family.labels[0]: value})
            self._m[family.name] = metric if family.labels else metric.labels(**fixed)
        self._base = base
        success = self._m["request_success"]
        self._success = {reason: success.labels(**base, finished_reason=reason)
                         for reason in FINISHED_REASONS[v >= NEW]}
        if "engine_sleep_state" in self._m:
            self._m["engine_sleep_state"].labels(**base, sleep_state="awake").set(1)
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     ["engine", *(cache_config or {})], registry=self.registry)
        info.labels(engine="0", **(cache_config or {})).set(1)
        if speculative:  # vLLM's V1 counters, made at 0 when the engine starts
            for name, doc in SPEC_DECODE_COUNTERS:
                Counter(f"vllm:{name}", doc, list(base), registry=self.registry).labels(**base)
        if loras:
            self._lora = Gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                               ["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
                               registry=self.registry)

    def watch(self, engine: SimEngine) -> None:
        """Read the gauges from `engine` at every scrape."""
        m = self._m
        m["num_requests_running"].set_function(lambda: len(engine.running))
        m["num_requests_waiting"].set_function(lambda: len(engine.waiting))
        m["kv_cache_usage_perc"].set_function(lambda: engine.cache.usage)
        if "num_requests_waiting_by_reason" in m:
            m["num_requests_waiting_by_reason"].labels(**self._base, reason="capacity") \
                .set_function(lambda: len(engine.waiting))
        self._engine = engine

    def render(self) -> bytes:
        if self._loras and self._engine is not None:
            self._update_lora()
        return generate_latest(self.registry)

    # -- EngineEvents ----------------------------------------------------------------------

    def admitted(self, seq: Sequence, queue_time: float) -> None:
        m = self._m
        m["request_queue_time_seconds"].observe(queue_time)
        prompt, cached = len(seq.prompt_ids), seq.cached_tokens
        m["prompt_tokens"].inc(prompt)
        m["prefix_cache_queries"].inc(prompt)
        m["prefix_cache_hits"].inc(cached)
        if "prompt_tokens_by_source" in m:
            by_source = m["prompt_tokens_by_source"]
            by_source.labels(**self._base, source="local_compute").inc(prompt - cached)
            by_source.labels(**self._base, source="local_cache_hit").inc(cached)
            m["prompt_tokens_cached"].inc(cached)
            m["prompt_tokens_cached_by_source"].labels(**self._base, source="device").inc(cached)
            m["request_prefill_kv_computed_tokens"].observe(prompt - cached)

    def preempted(self, count: int) -> None:
        self._m["num_preemptions"].inc(count)

    def step(self, tokens: int) -> None:
        self._m["iteration_tokens_total"].observe(tokens)

    def first_token(self, ttft: float) -> None:
        self._m["time_to_first_token_seconds"].observe(ttft)
        self._m["generation_tokens"].inc()

    def token(self, inter_token_latency: float) -> None:
        m = self._m
        m["inter_token_latency_seconds"].observe(inter_token_latency)
        if "time_per_output_token_seconds" in m:
            m["time_per_output_token_seconds"].observe(inter_token_latency)
        m["generation_tokens"].inc()

    def finished(self, seq: Sequence, reason: str, e2e: float) -> None:
        if reason == "abort":
            # As real vLLM (0.10 to 0.32, measured on 0.32; vllm#31503, #55634): a request
            # whose client left is in no per-request metric, `request_success_total`'s
            # `abort` included; only the token counters saw its work.
            return
        self._success[reason].inc()
        m = self._m
        m["e2e_request_latency_seconds"].observe(e2e)
        m["request_prompt_tokens"].observe(len(seq.prompt_ids))
        m["request_generation_tokens"].observe(len(seq.output_ids))
        m["request_max_num_generation_tokens"].observe(seq.max_tokens)
        m["request_params_max_tokens"].observe(seq.max_tokens)
        m["request_params_n"].observe(1)
        if seq.first_scheduled_at is not None and seq.first_token_at is not None:
            now = seq.arrival + e2e
            m["request_inference_time_seconds"].observe(now - seq.first_scheduled_at)
            m["request_prefill_time_seconds"].observe(seq.first_token_at - seq.first_scheduled_at)
            decode = now - seq.first_token_at
            m["request_decode_time_seconds"].observe(decode)
            if len(seq.output_ids) > 1:
                m["request_time_per_output_token_seconds"].observe(
                    decode / (len(seq.output_ids) - 1))
        if "request_num_preemptions" in m:
            m["request_num_preemptions"].observe(seq.preemptions)

    def _update_lora(self) -> None:
        engine = self._engine
        running = sorted({s.lora for s in engine.running if s.lora})
        waiting = sorted({s.lora for s in engine.waiting if s.lora})
        self._lora.clear()
        self._lora.labels(max_lora=str(len(self._loras)), running_lora_adapters=",".join(running),
                          waiting_lora_adapters=",".join(waiting)).set(time.time())
