"""A simulated node's configuration: models, version, limits, engine profile, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from warden.sim.crashes import TRIGGERS, default_triggers
from warden.sim.engine import EngineProfile
from warden.sim.tokenizer import SPECIAL_TOKENS, VOCAB_SIZE, Tokenizer


@dataclass(frozen=True)
class NodeConfig:
    models: tuple[str, ...] = ("sim-model",)
    loras: tuple[str, ...] = ()          # LoRA adapters, served by name on top of models[0]
    vllm_version: str = "0.11.0"
    answers_version: bool = True         # False: /version is 404 (a gateway in front hides it)
    legacy_metric_names: bool = False    # vllm:gpu_cache_usage_perc etc. (before vLLM 0.10)
    speculative_decoding: bool = False   # the vllm:spec_decode_* counters (nothing drafts)
    max_model_len: int = 4096
    vocab_size: int = VOCAB_SIZE           # its tokenizer's size (ids 0..vocab_size-1)
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS  # the tokenizer's last ids
    # vLLM --enable-tokenizer-info-endpoint: GET /tokenizer_info (from vLLM 0.10)
    tokenizer_info: bool = False
    engine: EngineProfile = field(default_factory=EngineProfile)
    # Requests that kill the engine (names in warden.sim.crashes); None: the version's own.
    crash_triggers: tuple[str, ...] | None = None
    api_key: str | None = None             # vLLM --api-key: /v1 routes need this bearer token
    exit_after: float = 2.0                # a dead engine's API server exits this much later
    restart_after: float | None = 5.0      # then a supervisor restarts it (None: it stays down)

    def __post_init__(self) -> None:
        _ = self.tokenizer  # built now: a vocabulary too small for its special tokens fails
        unknown = set(self.crash_triggers or ()) - set(TRIGGERS)
        if unknown:
            raise ValueError(f"unknown crash triggers: {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(TRIGGERS)})")
        capacity = self.engine.num_gpu_blocks * self.engine.block_size
        if self.max_model_len > capacity:  # vLLM refuses to start the same way
            raise ValueError(
                f"max_model_len ({self.max_model_len}) is larger than the KV cache can hold "
                f"({self.engine.num_gpu_blocks} blocks x {self.engine.block_size} tokens = "
                f"{capacity}); lower --max-model-len or raise --num-gpu-blocks")

    @property
    def triggers(self) -> tuple[str, ...]:
        if self.crash_triggers is None:
            return default_triggers(self.vllm_version)
        return self.crash_triggers

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.vocab_size, self.special_tokens)

    @property
    def served(self) -> tuple[str, ...]:
        return self.models + self.loras

    def cache_config(self) -> dict[str, str]:
        """vllm:cache_config_info's main labels (a subset of the real ones)."""
        e = self.engine
        return {"block_size": str(e.block_size), "cache_dtype": "auto",
                "enable_prefix_caching": str(e.enable_prefix_caching),
                "gpu_memory_utilization": "0.9", "num_gpu_blocks": str(e.num_gpu_blocks),
                "num_gpu_blocks_override": "None", "prefix_caching_hash_algo": "sha256",
                "sliding_window": "None"}
