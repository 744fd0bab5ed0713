"""The model-facts learner against canned vLLM API server answers at the `fetch` seam: what it
learns from each endpoint, what it leaves unknown when an endpoint is missing, hangs or
answers garbage, and that it never settles on a vocabulary too small."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from warden.config import parse_settings
from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.errors import ConnectFailed, UpstreamTimeout
from warden.fleet import fact_learner
from warden.fleet.backend import Backend
from warden.fleet.fact_learner import FactLearner
from warden.fleet.facts_probe import CANDIDATES, SAMPLE

QWEN_SPECIALS = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>",
                 151655: "<|image_pad|>"}
HANG = "hang"


class FakeApiServer:
    """vLLM's tokenizer endpoints over a tokenizer of `vocab` ids: `specials` are added
    tokens; other ids decode to `w<id>`. `fast`: an unknown id is dropped when decoding (a
    Hugging Face fast tokenizer), else it fails the request with a 500 (a slow one).
    `token_strs`: /tokenize gives token strings (vLLM 0.9.1+); `info`: /tokenizer_info is on.
    `answers` replaces an endpoint's answer: (status, body), an exception, or HANG."""

    def __init__(self, vocab: int = 151665, specials: dict[int, str] | None = None, *,
                 fast: bool = True, token_strs: bool = True, info: bool = False,
                 silent: range = range(0), unknown_text: str = "",
                 answers: dict[str, object] | None = None):
        self.vocab = vocab
        self.specials = QWEN_SPECIALS if specials is None else specials
        self.fast, self.token_strs, self.info = fast, token_strs, info
        self.silent = silent          # ids inside that decode to nothing
        self.unknown_text = unknown_text
        self.answers: dict[str, object] = answers or {}
        self.calls: list[tuple[str, str, dict | None]] = []

    async def __call__(self, pool, method: str, path: str, host_header: bytes,
                       timeout: float, body: bytes = b"", headers: bytes = b""):
        self.calls.append((method, path, orjson.loads(body) if body else None))
        answer = self.answers.get(path)
        if answer == HANG:
            await asyncio.Event().wait()
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        request = orjson.loads(body) if body else {}
        if path == "/tokenize":
            return 200, orjson.dumps(self._tokenize(request))
        if path == "/detokenize":
            return self._detokenize(request["tokens"])
        if path == "/tokenizer_info" and self.info:
            added = {str(i): text for i, text in self.specials.items()}
            return 200, orjson.dumps({"added_tokens_decoder": added,
                                      "tokenizer_class": "Qwen2TokenizerFast"})
        return 404, b'{"detail":"Not Found"}'

    def _tokenize(self, request: dict) -> dict:
        by_text = {text: i for i, text in self.specials.items()}
        ids, strings = [], []
        for line in request["prompt"].split("\n"):
            pieces = [line] if line in by_text else list(line)
            for piece in pieces:
                ids.append(by_text.get(piece, 1000 + ord(piece[0]) % 1000))
                strings.append(piece)
        answer = {"count": len(ids), "max_model_len": 32768, "tokens": ids}
        if self.token_strs:
            answer["token_strs"] = strings if request.get("return_token_strs") else None
        return answer

    def _detokenize(self, ids: list[int]) -> tuple[int, bytes]:
        text = []
        for i in ids:
            if 0 <= i < self.vocab:
                text.append("" if i in self.silent else self.specials.get(i, f"w{i}"))
            elif not self.fast:
                return 500, b"Internal Server Error"
            else:
                text.append(self.unknown_text)
        return 200, orjson.dumps({"prompt": "".join(text)})


def backend(name: str = "b", cards: list[dict] | None = None) -> Backend:
    b = Backend(BackendSpec(name=name, url="http://127.0.0.1:9"), TimeoutsSpec())
    b.learn_models(cards if cards is not None else
                   [{"id": "qwen", "max_model_len": 32768, "parent": None}])
    return b


def learner(settings: dict | None = None) -> FactLearner:
    return FactLearner(parse_settings({"backends": [{"name": "b", "url": "http://x:1"}],
                                       **(settings or {})}, {}))


async def learn(server: FakeApiServer, monkeypatch, target: Backend | None = None,
                facts: FactLearner | None = None) -> Backend:
    monkeypatch.setattr(fact_learner, "fetch", server)
    target = target if target is not None else backend()
    facts = facts if facts is not None else learner()
    facts.answered(target)
    await facts.idle()
    return target


def learned(target: Backend):
    return target.learned_facts["qwen"]


async def test_a_fast_tokenizer_gives_its_size_and_special_tokens(monkeypatch):
    facts = learned(await learn(server := FakeApiServer(), monkeypatch))
    assert (facts.vocab_size.value, facts.vocab_size.source) == (151665, "POST /detokenize")
    assert (set(facts.special_tokens.value), facts.special_tokens.source) == \
        (set(QWEN_SPECIALS.values()), "POST /tokenize")
    assert facts.max_model_len is None and facts.problems == ()  # (the card gives the length)
    probes = [path for _, path, _ in server.calls]
    assert probes.count("/tokenize") == 2 and probes.count("/detokenize") < 50
    assert not any(p.startswith("/v1/") for p in probes)  # nothing an engine would see


async def test_a_slow_tokenizer_that_fails_on_unknown_ids_gives_its_size(monkeypatch):
    facts = learned(await learn(FakeApiServer(32000, {1: "<s>", 2: "</s>"}, fast=False),
                                monkeypatch))
    assert facts.vocab_size.value == 32000 and set(facts.special_tokens.value) == {"<s>", "</s>"}


async def test_before_token_strings_each_candidate_is_tokenized_alone(monkeypatch):
    facts = learned(await learn(server := FakeApiServer(token_strs=False), monkeypatch))
    assert set(facts.special_tokens.value) == set(QWEN_SPECIALS.values())
    assert sum(path == "/tokenize" for _, path, _ in server.calls) == 2 + len(CANDIDATES)
    sent = [body for _, path, body in server.calls if path == "/tokenize"]
    assert all(body["add_special_tokens"] is False for body in sent)


async def test_tokenizer_info_gives_the_added_markers_only(monkeypatch):
    specials = {**QWEN_SPECIALS, 151700: "<|reserved_special_token_3|>", 151701: "\n\n",
                151702: "<tool_call>"}
    server = FakeApiServer(151703, specials, info=True)
    facts = learned(await learn(server, monkeypatch))
    assert facts.special_tokens.source == "GET /tokenizer_info"
    assert set(facts.special_tokens.value) == {*QWEN_SPECIALS.values(), "<tool_call>"}
    assert facts.vocab_size.value == 151703


async def test_a_missing_endpoint_leaves_its_facts_unknown_and_says_so_once(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, "warden.facts")
    server = FakeApiServer(answers={"/detokenize": (404, b'{"detail":"Not Found"}')})
    facts = learner()
    target = await learn(server, monkeypatch, facts=facts)
    assert learned(target).vocab_size is None and learned(target).special_tokens is not None
    assert dict(learned(target).problems) == {"vocab_size": "POST /detokenize answered 404"}
    facts.refused(target)  # restarted: learned again, the same problem is not logged again
    await learn(server, monkeypatch, target, facts)
    assert [r.getMessage() for r in caplog.records] == [
        "backend b, model qwen: vocab_size is unknown (POST /detokenize answered 404); set "
        "guard.models.qwen.vocab_size to give it"]


async def test_no_tokenize_endpoint_leaves_the_card_length_alone(monkeypatch):
    server = FakeApiServer(answers={"/tokenize": (404, b'{"detail":"Not Found"}')})
    facts = learned(await learn(server, monkeypatch))
    assert facts.vocab_size is None and facts.special_tokens is None
    assert "max_model_len" not in dict(facts.problems)  # the card says it


async def test_tokenize_gives_the_length_when_the_card_does_not(monkeypatch):
    target = await learn(FakeApiServer(), monkeypatch, backend(cards=[{"id": "qwen"}]))
    assert (learned(target).max_model_len.value, learned(target).max_model_len.source) == \
        (32768, "POST /tokenize")


@pytest.mark.parametrize("answer", [(200, b"<html>not json"), (200, b'{"prompt": 5}'),
                                    (200, b"[1, 2]")])
async def test_garbage_leaves_the_vocabulary_unknown(monkeypatch, answer):
    server = FakeApiServer(answers={"/detokenize": answer})
    facts = learned(await learn(server, monkeypatch))
    assert facts.vocab_size is None and "vocab_size" in dict(facts.problems)


@pytest.mark.parametrize("tokens", [b'"abc"', b"[]"])  # ([]: no largest id to start from)
async def test_garbage_from_tokenize_leaves_everything_but_the_card_unknown(monkeypatch, tokens):
    server = FakeApiServer(answers={"/tokenize": (200, b'{"tokens": %s}' % tokens)})
    facts = learned(await learn(server, monkeypatch))
    assert facts.vocab_size is None and facts.special_tokens is None
    assert dict(facts.problems)["vocab_size"] == "POST /tokenize answered no token list"


async def test_ids_that_decode_to_nothing_never_give_too_small_a_vocabulary(monkeypatch):
    """The search may land on a run of ids inside that decode to nothing: the ids past the
    answer are checked, and a size too small (which would refuse valid ids) is not kept."""
    server = FakeApiServer()
    known = max(server._tokenize({"prompt": SAMPLE})["tokens"])
    probe = max(2 * known, 1024)  # the ids the search doubles through: the last one inside
    while 2 * probe < server.vocab:
        probe *= 2
    server.silent = range(probe, probe + 100)  # ... and those after it decode to nothing
    facts = learned(await learn(server, monkeypatch))
    assert facts.vocab_size is None
    assert dict(facts.problems)["vocab_size"] == \
        f"POST /detokenize decodes ids past {probe}: the ids have gaps"


async def test_a_tokenizer_that_decodes_every_id_gives_no_size(monkeypatch):
    facts = learned(await learn(FakeApiServer(unknown_text="<unk>"), monkeypatch))
    assert facts.vocab_size is None and "every id" in dict(facts.problems)["vocab_size"]


async def test_a_timeout_leaves_the_facts_unknown_and_is_tried_again_later(monkeypatch):
    timeout = UpstreamTimeout("POST /tokenize got no answer within 5s")
    server = FakeApiServer(answers={"/tokenize": timeout})
    facts = learner()
    target = await learn(server, monkeypatch, facts=facts)
    assert dict(learned(target).problems) == {
        "vocab_size": "POST /tokenize got no answer within 5s",
        "special_tokens": "POST /tokenize got no answer within 5s"}
    calls = len(server.calls)
    facts.answered(target)  # the next poll: not before RETRY_AFTER
    await facts.idle()
    assert len(server.calls) == calls


async def test_a_backend_that_hangs_is_given_up_on_within_the_budget(monkeypatch):
    monkeypatch.setattr(fact_learner, "ROUND_BUDGET", 0.05)
    server = FakeApiServer(answers={"/detokenize": HANG})
    facts = learned(await learn(server, monkeypatch))
    assert facts.vocab_size is None and facts.special_tokens is None
    assert dict(facts.problems)["vocab_size"] == "learning took over 0.05s"


async def test_a_refused_connection_is_a_problem_not_a_crash(monkeypatch):
    server = FakeApiServer(answers={"/tokenizer_info": ConnectFailed("connection refused")})
    assert dict(learned(await learn(server, monkeypatch)).problems)["vocab_size"] == \
        "connection refused"


async def test_learned_once_and_again_only_when_the_backend_changes(monkeypatch):
    server = FakeApiServer()
    facts = learner()
    target = await learn(server, monkeypatch, facts=facts)
    epoch, calls = target.facts_epoch, len(server.calls)
    facts.answered(target)  # the next poll: nothing changed
    await facts.idle()
    assert len(server.calls) == calls and target.facts_epoch == epoch
    target.vllm_version = "0.11.0"  # /version answered: learned again, to the same facts
    facts.answered(target)
    await facts.idle()
    assert len(server.calls) > calls and target.facts_epoch == epoch


async def test_lora_adapters_and_a_guard_turned_off_are_not_probed(monkeypatch):
    server = FakeApiServer()
    target = await learn(server, monkeypatch, backend(cards=[
        {"id": "qwen", "max_model_len": 32768, "parent": None},
        {"id": "sql-lora", "max_model_len": 32768, "parent": "qwen"}]))
    assert set(target.learned_facts) == {"qwen"}
    assert all(body is None or body.get("model") != "sql-lora" for _, _, body in server.calls)
    off = FakeApiServer()
    untouched = await learn(off, monkeypatch, facts=learner({"guard": {"mode": "off"}}))
    assert off.calls == [] and untouched.learned_facts == {}


async def test_the_backend_api_key_goes_with_every_probe(monkeypatch):
    seen: list[bytes] = []
    server = FakeApiServer()

    async def fetch(pool, method, path, host_header, timeout, body=b"", headers=b""):
        seen.append(headers)
        return await server(pool, method, path, host_header, timeout, body, headers)

    monkeypatch.setattr(fact_learner, "fetch", fetch)
    target = Backend(BackendSpec(name="b", url="http://127.0.0.1:9", api_key="k"),
                     TimeoutsSpec())
    target.learn_models([{"id": "qwen", "max_model_len": 32768}])
    facts = learner()
    facts.answered(target)
    await facts.idle()
    assert seen and set(seen) == {b"authorization: Bearer k\r\n"}


async def test_a_failure_of_its_own_is_logged_and_the_learner_carries_on(monkeypatch, caplog):
    caplog.set_level(logging.ERROR, "warden.facts")
    server, facts = FakeApiServer(), learner()
    server.answers["/tokenizer_info"] = RuntimeError("unexpected")
    target = await learn(server, monkeypatch, facts=facts)
    assert target.learned_facts == {}
    assert [r.getMessage() for r in caplog.records] == [
        "backend b: learning its model facts failed"]
    server.answers.clear()
    facts.refused(target)  # (it restarts: the same learner learns it)
    assert learned(await learn(server, monkeypatch, target, facts)).vocab_size is not None
