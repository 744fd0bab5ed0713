"""A model's facts as the guard sees them: learned per backend, merged across backends (the
conservative value where they disagree), overridden field by field by `guard.models`, and
shown with their source; the token-id rules act on a learned vocabulary with none
configured."""

from __future__ import annotations

import asyncio

from warden.config import parse_settings
from warden.config.schema import BackendSpec, GuardSpec, ModelFacts, TimeoutsSpec
from warden.fleet import fact_learner
from warden.fleet.backend import Backend
from warden.fleet.model_facts import Learned, LearnedModel, describe, merged_facts
from warden.guard.guard import Guard

OLD = "0.11.0"
CHAT = "/v1/chat/completions"


def backend(name: str, vocab: int | None = None, length: int | None = 4096,
            specials: tuple[str, ...] = ()) -> Backend:
    b = Backend(BackendSpec(name=name, url=f"http://127.0.0.1:{hash(name) % 1000 + 9000}",
                            vllm_version=OLD), TimeoutsSpec())
    b.learn_models([{"id": "m", "max_model_len": length}])
    b.learned({"m": LearnedModel(
        vocab_size=Learned(vocab, "POST /detokenize") if vocab is not None else None,
        special_tokens=Learned(specials, "POST /tokenize") if specials else None)})
    return b


def chat(**extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def admit(guard: Guard, body: dict, backends: list[Backend]):
    return guard.judge(CHAT, "m", body, b"", backends)


def test_disagreeing_backends_give_the_smaller_bounds_and_all_special_tokens():
    one = backend("one", vocab=152064, length=32768, specials=("<|im_start|>",))
    two = backend("two", vocab=151665, length=8192, specials=("<|im_end|>",))
    facts = merged_facts("m", None, [one, two])
    assert (facts.vocab_size, facts.max_model_len) == (151665, 8192)
    assert facts.special_tokens == ["<|im_end|>", "<|im_start|>"]
    unknown = backend("unknown", vocab=None, length=None)
    assert merged_facts("m", None, [unknown, one]).vocab_size == 152064  # adds nothing


def test_what_the_config_sets_wins_field_by_field():
    learned = backend("b", vocab=151665, length=32768)
    facts = merged_facts("m", ModelFacts(vocab_size=152064), [learned])
    assert (facts.vocab_size, facts.max_model_len) == (152064, 32768)
    off = merged_facts("m", ModelFacts.model_validate({"vocab_size": None}), [learned])
    assert off.vocab_size is None  # set to null by hand: the learned one is not used


def test_a_learned_vocabulary_arms_the_token_rules_with_none_configured():
    guard = Guard(GuardSpec())
    learned = [backend("b", vocab=1000)]
    outcome = admit(guard, chat(logit_bias={"1000": 5}), learned)
    assert outcome.rejection is not None and "tok-logit-bias-oov" in outcome.rejection.message
    assert "vocabulary of 1000" in outcome.rejection.message
    assert admit(guard, chat(logit_bias={"999": 5}), learned) is None  # its neighbour
    assert admit(guard, chat(logit_bias={"1000": 5}), [backend("u")]) is None  # unknown


def test_the_configured_vocabulary_overrides_a_learned_one_for_the_rules():
    guard = Guard(GuardSpec(models={"m": ModelFacts(vocab_size=2000)}))
    assert admit(guard, chat(logit_bias={"1500": 5}), [backend("b", vocab=1000)]) is None


def test_facts_are_merged_once_and_again_when_learning_changes_them():
    guard = Guard(GuardSpec())
    serving = [backend("b", vocab=1000)]
    first = guard.facts("m", serving)
    assert guard.facts("m", serving) is first  # cached
    serving[0].learned({"m": LearnedModel(vocab_size=Learned(500, "POST /detokenize"))})
    assert guard.facts("m", serving).vocab_size == 500
    serving[0].learn_models([{"id": "m", "max_model_len": 2048}])
    assert guard.facts("m", serving).max_model_len == 2048
    again = [*serving, backend("c", vocab=400)]  # the fleet changed: a new list
    assert guard.facts("m", again).vocab_size == 400


def test_each_fact_is_shown_with_where_it_came_from():
    learned = backend("b", vocab=151665, length=32768, specials=("<|im_start|>",))
    learned.learned({"m": LearnedModel(
        vocab_size=Learned(151665, "POST /detokenize"),
        problems=(("special_tokens", "POST /tokenize answered 404"),))})
    shown = describe("m", ModelFacts(modalities=["image"]), learned)
    assert shown["vocab_size"] == {"value": 151665, "source": "learned",
                                   "from": "POST /detokenize"}
    assert shown["max_model_len"] == {"value": 32768, "source": "learned",
                                      "from": "GET /v1/models"}
    assert shown["special_tokens"] == {"value": None, "source": "unknown",
                                       "problem": "POST /tokenize answered 404"}
    assert shown["modalities"] == {"value": ["image"], "source": "configured"}
    assert shown["structured_output_backend"] == {"value": None, "source": "unknown"}
    overridden = describe("m", ModelFacts(vocab_size=152064), learned)["vocab_size"]
    assert overridden == {"value": 152064, "source": "configured", "learned": 151665,
                          "from": "POST /detokenize"}


async def test_a_backend_a_reload_removes_is_forgotten_and_its_learning_stopped(monkeypatch):
    from tests.unit.test_fact_learner import HANG, FakeApiServer, learn, learner

    facts = learner()
    monkeypatch.setattr(fact_learner, "ROUND_BUDGET", 30.0)  # (far longer than this test)
    server = FakeApiServer(answers={"/detokenize": HANG})
    hung = asyncio.get_running_loop().create_task(learn(server, monkeypatch, facts=facts))
    while not any(path == "/detokenize" for _, path, _ in server.calls):  # (hung there)
        await asyncio.sleep(0)
    facts.use(parse_settings({"backends": [{"name": "x", "url": "http://x:1"}]}, {}), [])
    target = await hung  # (it returns once nothing is being learned)
    assert target.learned_facts == {}
