"""The simulated node's tokenizer endpoints have the shapes of the vLLM version it runs, and a
tokenizer with a size and special tokens that a gateway can learn from them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from warden.config import ConfigError
from warden.sim import routes
from warden.sim.config import NodeConfig
from warden.sim.profiles import load_fleet


class Answer:
    def respond(self, status: int, headers: bytes, body: bytes) -> None:
        self.status, self.body = status, orjson.loads(body)


def post(path: str, body: dict, config: NodeConfig) -> dict:
    answer = Answer()
    routes.answer(path, {"model": "sim-model", **body}, config, answer)  # type: ignore[arg-type]
    assert answer.status == 200
    return answer.body


def test_tokenize_has_token_strings_from_vllm_0_9_1_as_vllm():
    old = post("/tokenize", {"prompt": "hi"}, NodeConfig(vllm_version="0.8.5"))
    assert list(old) == ["count", "max_model_len", "tokens"]
    new = post("/tokenize", {"prompt": "hi"}, NodeConfig(vllm_version="0.11.0"))
    assert list(new) == ["count", "max_model_len", "tokens", "token_strs"]
    assert new["token_strs"] is None
    asked = post("/tokenize", {"prompt": "hi <|im_start|>", "return_token_strs": True},
                 NodeConfig())
    assert asked["token_strs"] == ["t" + str(asked["tokens"][0]), "<|im_start|>"]


def test_a_special_token_is_one_of_the_last_ids_and_decodes_to_its_text():
    config = NodeConfig(vocab_size=1000, special_tokens=("<|im_start|>", "<image>"))
    ids = post("/tokenize", {"prompt": "a <image> b"}, config)["tokens"]
    assert len(ids) == 3 and ids[1] == 999 and max(ids[0], ids[2]) < 998
    assert post("/detokenize", {"tokens": [998, 999]}, config) == {
        "prompt": "<|im_start|> <image>"}
    assert post("/tokenize", {"prompt": "<|im_end|>"}, config)["count"] > 1  # not special


def test_detokenize_drops_ids_outside_the_vocabulary_as_a_fast_tokenizer():
    config = NodeConfig(vocab_size=1000)
    assert post("/detokenize", {"tokens": [1, 1000, 2]}, config) == {"prompt": "t1 t2"}
    assert post("/detokenize", {"tokens": [1000, 5000]}, config) == {"prompt": ""}


def test_tokenizer_info_is_served_from_vllm_0_10_when_enabled():
    assert not routes.serves_tokenizer_info(NodeConfig())  # off by default, as vLLM's
    assert not routes.serves_tokenizer_info(NodeConfig(vllm_version="0.9.2",
                                                       tokenizer_info=True))
    config = NodeConfig(vocab_size=100, special_tokens=("<s>",), tokenizer_info=True)
    assert routes.serves_tokenizer_info(config)
    info = orjson.loads(routes.tokenizer_info(config))
    assert info["added_tokens_decoder"] == {"99": "<s>"} and info["tokenizer_class"]


def test_a_fleet_file_sets_the_tokenizer_per_node(tmp_path: Path):
    path = tmp_path / "fleet.yaml"
    path.write_text("nodes:\n  - {vocab_size: 5000, special_tokens: ['<s>']}\n"
                    "  - {enable_tokenizer_info_endpoint: true}\n")
    small, default = load_fleet(path)
    assert (small.vocab_size, small.special_tokens) == (5000, ("<s>",))
    assert default.vocab_size == 32000 and default.tokenizer_info
    path.write_text("nodes:\n  - {vocab_size: 2, special_tokens: ['<a>', '<b>']}\n")
    with pytest.raises(ConfigError, match="cannot hold 2 special tokens"):
        load_fleet(path)
