"""vLLM's metric families, as captured from real servers (0.11.0 and 0.32.0).

One row per family: name (as declared to prometheus_client: counters without `_total`), type,
extra labels beyond `engine` and `model_name`, histogram buckets, and the versions that have it.
Two captures are the ground truth, 0.11.0 and 0.32.0; a version between them follows 0.11.0
until 0.32.0 (which families appeared exactly when in between is not known here).
"""

from __future__ import annotations

from dataclasses import dataclass

TOKENS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
N = (1.0, 2.0, 5.0, 10.0, 20.0)
ITERATION = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
             16384.0)
TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
PER_TOKEN = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0)
REQUEST_TIME = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
PREEMPTIONS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)

NEW = (0, 32, 0)  # the families only the 0.32.0 capture has


@dataclass(frozen=True)
class Family:
    name: str
    kind: str                      # "gauge" | "counter" | "histogram"
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    per_engine: bool = True        # labelled with `engine` (one family is not)
    since: tuple[int, int, int] = (0, 0, 0)
    until: tuple[int, int, int] | None = None   # first version without it

    def present(self, version: tuple[int, int, int]) -> bool:
        return self.since <= version and (self.until is None or version < self.until)


FAMILIES = (
    Family("estimated_flops_per_gpu", "counter", "Estimated number of floating point "
           "operations per GPU (for Model Flops Utilization calculations).", since=NEW),
    Family("estimated_read_bytes_per_gpu", "counter", "Estimated number of bytes read from "
           "memory per GPU (for Model Flops Utilization calculations).", since=NEW),
    Family("estimated_write_bytes_per_gpu", "counter", "Estimated number of bytes written to "
           "memory per GPU (for Model Flops Utilization calculations).", since=NEW),
    Family("num_requests_running", "gauge", "Number of requests in model execution batches."),
    Family("num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
    Family("num_requests_waiting_by_reason", "gauge", "Number of waiting requests by reason. "
           "Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred "
           "by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all "
           "reasons equals vllm:num_requests_waiting.", ("reason",), since=NEW),
    Family("engine_sleep_state", "gauge", "Engine sleep state; awake = 0 means "
           "engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means "
           "sleep level 1; discard_all = 1 means sleep level 2.", ("sleep_state",), since=NEW),
    Family("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."),
    Family("prefix_cache_queries", "counter", "Prefix cache queries, in terms of number of "
           "queried tokens."),
    Family("prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached "
           "tokens."),
    Family("external_prefix_cache_queries", "counter", "External prefix cache queries from KV "
           "connector cross-instance cache sharing, in terms of number of queried tokens.",
           since=NEW),
    Family("external_prefix_cache_hits", "counter", "External prefix cache hits from KV "
           "connector cross-instance cache sharing, in terms of number of cached tokens.",
           since=NEW),
    Family("mm_cache_queries", "counter", "Multi-modal cache queries, in terms of number of "
           "queried items.", since=NEW),
    Family("mm_cache_hits", "counter", "Multi-modal cache hits, in terms of number of cached "
           "items.", since=NEW),
    Family("num_preemptions", "counter", "Cumulative number of preemption from the engine."),
    Family("prompt_tokens", "counter", "Number of prefill tokens processed."),
    Family("prompt_tokens_by_source", "counter", "Number of prompt tokens by source.",
           ("source",), since=NEW),
    Family("prompt_tokens_cached", "counter", "Number of cached prompt tokens (local + "
           "external).", since=NEW),
    Family("prompt_tokens_cached_by_source", "counter", "Prefix-cache hit tokens by the cache "
           "tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p "
           "(transferred from another vLLM instance) or external_unspecified. Counted at "
           "admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
           ("source",), since=NEW),
    Family("generation_tokens", "counter", "Number of generation tokens processed."),
    Family("request_success", "counter", "Count of successfully processed requests.",
           ("finished_reason",)),
    Family("admission_rejections", "counter", "Number of admission attempts rejected by a "
           "queue limit, by reason.",
           ("reason",), since=NEW, per_engine=False),
    Family("request_prompt_tokens", "histogram", "Number of prefill tokens processed.",
           buckets=TOKENS),
    Family("request_generation_tokens", "histogram", "Number of generation tokens processed.",
           buckets=TOKENS),
    Family("iteration_tokens_total", "histogram", "Histogram of number of tokens per engine_"
           "step.", buckets=ITERATION),
    Family("request_max_num_generation_tokens", "histogram", "Histogram of maximum number of "
           "requested generation tokens.", buckets=TOKENS),
    Family("request_params_n", "histogram", "Histogram of the n request parameter.",
           buckets=N),
    Family("request_params_max_tokens", "histogram", "Histogram of the max_tokens request "
           "parameter.", buckets=TOKENS),
    Family("time_to_first_token_seconds", "histogram", "Histogram of time to first token in "
           "seconds.", buckets=TTFT),
    Family("time_per_output_token_seconds", "histogram", "Histogram of time per output token "
           "in seconds.DEPRECATED: Use vllm:inter_token_latency_seconds instead.",
           buckets=PER_TOKEN, until=NEW),
    Family("inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in "
           "seconds.", buckets=PER_TOKEN),
    Family("request_time_per_output_token_seconds", "histogram", "Histogram of "
           "time_per_output_token_seconds per request.", buckets=PER_TOKEN),
    Family("e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in "
           "seconds.", buckets=REQUEST_TIME),
    Family("request_queue_time_seconds", "histogram", "Histogram of time spent in WAITING "
           "phase for request.", buckets=REQUEST_TIME),
    Family("request_inference_time_seconds", "histogram", "Histogram of time spent in RUNNING "
           "phase for request.", buckets=REQUEST_TIME),
    Family("request_prefill_time_seconds", "histogram", "Histogram of time spent in PREFILL "
           "phase for request.", buckets=REQUEST_TIME),
    Family("request_decode_time_seconds", "histogram", "Histogram of time spent in DECODE "
           "phase for request.", buckets=REQUEST_TIME),
    Family("request_num_preemptions", "histogram", "Histogram of the number of times a "
           "request was preempted.",
           buckets=PREEMPTIONS, since=NEW),
    Family("request_prefill_kv_computed_tokens", "histogram", "Histogram of new KV tokens "
           "computed during prefill (excluding cached tokens).", buckets=TOKENS, since=NEW),
    Family("cache_config_info", "gauge", "Information of the LLMEngine CacheConfig"),
)

# The names before vLLM 0.10 (`--metrics-naming legacy`), still read by some routers and
# dashboards.
LEGACY_NAMES = {
    "kv_cache_usage_perc": "gpu_cache_usage_perc",
    "prefix_cache_queries": "gpu_prefix_cache_queries",
    "prefix_cache_hits": "gpu_prefix_cache_hits",
}

# Label values vLLM always exports, even at zero.
FIXED_LABEL_VALUES = {
    "num_requests_waiting_by_reason": ("capacity", "deferred"),
    "engine_sleep_state": ("awake", "weights_offloaded", "discard_all"),
    "prompt_tokens_by_source": ("local_compute", "local_cache_hit", "external_kv_transfer"),
    "prompt_tokens_cached_by_source": ("device", "host", "disk", "p2p", "external_unspecified"),
    "admission_rejections": ("max_num_queued_reqs", "max_num_queued_tokens"),
}
