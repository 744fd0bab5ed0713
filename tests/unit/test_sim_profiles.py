from __future__ import annotations

from pathlib import Path

import pytest

from warden.config import ConfigError
from warden.sim.profiles import load_fleet


def test_groups_override_defaults_and_expand_counts(tmp_path: Path):
    path = tmp_path / "fleet.yaml"
    path.write_text("defaults: {models: [qwen], token_delay: 0.01}\n"
                    "nodes:\n  - {count: 2}\n  - {num_gpu_blocks: 512, max_model_len: 2048}\n"
                    "  - {token_delay: 0.02, vllm_version: 0.32.0, crash_triggers: []}\n")
    nodes = load_fleet(path)
    assert len(nodes) == 4 and {n.models for n in nodes} == {("qwen",)}
    assert [n.engine.step_time for n in nodes] == [0.01, 0.01, 0.01, 0.02]
    assert nodes[2].engine.num_gpu_blocks == 512
    assert nodes[3].vllm_version == "0.32.0" and nodes[3].triggers == ()
    assert nodes[0].triggers  # the 0.11 default crashes stay on unless turned off


def test_mistakes_are_reported_with_their_path(tmp_path: Path):
    path = tmp_path / "fleet.yaml"
    path.write_text("nodes:\n  - {count: 0, tokn_delay: 1}\n  - {num_gpu_blocks: 1}\n")
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    assert "nodes[0].tokn_delay: unknown field" in caught.value.problems
    assert any(p.startswith("nodes[0].count:") for p in caught.value.problems)
    path.write_text("nodes:\n  - {num_gpu_blocks: 1}\n")
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    assert "larger than the KV cache can hold" in caught.value.problems[0]
