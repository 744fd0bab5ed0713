"""A simulated fleet described in YAML: shared defaults, then node groups that override them.

    defaults: {models: [qwen], vllm_version: 0.11.0, token_delay: 0.02}
    nodes:
      - {count: 2}                                   # two standard nodes
      - {num_gpu_blocks: 512}                        # half the KV cache... or less
      - {token_delay: 0.04, prefill_time_per_token: 0.0002}   # a node twice as slow

Every key is a `warden sim` flag (underscores for dashes); mistakes are reported with their
path, like the gateway's config.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from warden.config.loader import ConfigError, describe_error
from warden.sim.config import NodeConfig
from warden.sim.engine import EngineProfile


class NodeSpec(BaseModel):
    """One node's settings; None means "as in defaults" (or the built-in default)."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=1, ge=1)
    models: list[str] | None = None
    loras: list[str] | None = None
    vllm_version: str | None = None
    legacy_metric_names: bool | None = None
    speculative_decoding: bool | None = None
    max_model_len: int | None = Field(default=None, ge=1)
    vocab_size: int | None = Field(default=None, ge=2)
    special_tokens: list[str] | None = None
    enable_tokenizer_info_endpoint: bool | None = None
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    num_gpu_blocks: int | None = Field(default=None, ge=1)
    block_size: int | None = Field(default=None, ge=1)
    enable_prefix_caching: bool | None = None
    token_delay: float | None = Field(default=None, ge=0)
    ttft: float | None = Field(default=None, ge=0)
    prefill_time_per_token: float | None = Field(default=None, ge=0)
    decode_time_per_seq: float | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=1)
    crash_triggers: list[str] | None = None
    api_key: str | None = None
    exit_after: float | None = Field(default=None, ge=0)
    restart_after: float | None = Field(default=None, ge=0)


class FleetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: NodeSpec = NodeSpec()
    nodes: list[NodeSpec] = Field(min_length=1)


def load_fleet(path: str | Path) -> list[NodeConfig]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError([f"{path}: cannot read ({e.strerror})"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{path}: not valid YAML"]) from None
    try:
        spec = FleetSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError([describe_error(err) for err in e.errors()]) from None
    configs = []
    for index, node in enumerate(spec.nodes):
        merged = {**spec.defaults.model_dump(exclude_none=True),
                  **node.model_dump(exclude_none=True)}
        try:
            config = node_config(merged)
        except ValueError as e:
            raise ConfigError([f"nodes[{index}]: {e}"]) from None
        configs += [config] * merged.get("count", 1)
    return configs


def node_config(values: dict) -> NodeConfig:
    """A NodeConfig from flag-named values (missing ones take the built-in defaults)."""
    base_engine = EngineProfile()
    engine = EngineProfile(
        max_num_seqs=values.get("max_num_seqs", base_engine.max_num_seqs),
        max_num_batched_tokens=values.get("max_num_batched_tokens",
                                          base_engine.max_num_batched_tokens),
        num_gpu_blocks=values.get("num_gpu_blocks", base_engine.num_gpu_blocks),
        block_size=values.get("block_size", base_engine.block_size),
        enable_prefix_caching=values.get("enable_prefix_caching", True),
        step_time=values.get("token_delay", 0.0),
        prefill_overhead=values.get("ttft", 0.0),
        prefill_time_per_token=values.get("prefill_time_per_token", 0.0),
        decode_time_per_seq=values.get("decode_time_per_seq", 0.0),
        output_tokens=values.get("output_tokens", base_engine.output_tokens))
    base = NodeConfig()
    triggers = values.get("crash_triggers")
    return NodeConfig(
        models=tuple(values.get("models", base.models)),
        loras=tuple(values.get("loras", ())),
        vllm_version=values.get("vllm_version", base.vllm_version),
        answers_version=values.get("answers_version", True),
        legacy_metric_names=values.get("legacy_metric_names", False),
        speculative_decoding=values.get("speculative_decoding", False),
        max_model_len=values.get("max_model_len", base.max_model_len),
        vocab_size=values.get("vocab_size", base.vocab_size),
        special_tokens=tuple(values.get("special_tokens", base.special_tokens)),
        tokenizer_info=values.get("enable_tokenizer_info_endpoint", False),
        engine=engine,
        crash_triggers=tuple(triggers) if triggers is not None else None,
        api_key=values.get("api_key"),
        exit_after=values.get("exit_after", base.exit_after),
        restart_after=values.get("restart_after", base.restart_after))
