"""A simulated vLLM server's endpoints that answer at once, with no engine step: embeddings,
tokenize, detokenize, tokenizer_info (the generating ones are the node's: warden.sim.node).
Their bodies have the shape of the version the node runs: /tokenize has `token_strs` from
0.9.1, /tokenizer_info exists from 0.10 when enabled."""

from __future__ import annotations

import os
import time

import orjson
from pydantic import TypeAdapter, ValidationError

from warden.edge.server import HttpConnection
from warden.fleet.versions import parse_version
from warden.sim import vllm_format as fmt
from warden.sim.config import NodeConfig
from warden.sim.generation import JSON_HEADERS
from warden.sim.requests import BadRequest, embed
from warden.sim.tokenizer import count_tokens

ANSWERED_AT_ONCE = frozenset(("/v1/embeddings", "/tokenize", "/detokenize"))

_TOKEN_IDS = TypeAdapter(list[int])  # vLLM's DetokenizeRequest.tokens (pydantic, lax)


def answer(path: str, body: dict, config: NodeConfig, conn: HttpConnection) -> None:
    """Answer a request to one of `ANSWERED_AT_ONCE` (its body parsed, its model served)."""
    if path == "/v1/embeddings":
        _embeddings(body, conn)
    elif path == "/tokenize":
        _tokenize(body, config, conn)
    else:
        _detokenize(body, config, conn)


def serves_tokenizer_info(config: NodeConfig) -> bool:
    return config.tokenizer_info and parse_version(config.vllm_version) >= (0, 10, 0)


def tokenizer_info(config: NodeConfig) -> bytes:
    """GET /tokenizer_info: the tokenizer's config as vLLM gives it (its `init_kwargs`, each
    added token as its text, and the tokenizer's class)."""
    tokenizer = config.tokenizer
    added = {str(tokenizer.special_id(t)): t for t in tokenizer.special_tokens}
    first = tokenizer.special_tokens[0] if tokenizer.special_tokens else None
    return orjson.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": first,
                         "eos_token": first, "pad_token": first, "unk_token": None,
                         "clean_up_tokenization_spaces": False,
                         "model_max_length": config.max_model_len,
                         "added_tokens_decoder": added})


def _embeddings(body: dict, conn: HttpConnection) -> None:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(400, "input must be a string or a list of strings",
                         "BadRequestError", "input")
    texts = [x if isinstance(x, str) else orjson.dumps(x).decode() for x in inputs]
    vectors = [embed(t) for t in texts]
    tokens = sum(count_tokens(t) for t in texts)
    rid = "embd-" + os.urandom(8).hex()
    conn.respond(200, JSON_HEADERS, orjson.dumps(fmt.embedding_list(
        rid, int(time.time()), body["model"], vectors, tokens)))


def _tokenize(body: dict, config: NodeConfig, conn: HttpConnection) -> None:
    """(`add_special_tokens` changes nothing: this tokenizer adds no BOS, as Qwen's.)"""
    tokenizer = config.tokenizer
    messages = body.get("messages")
    ids = tokenizer.encode_chat(messages) if isinstance(messages, list) \
        else tokenizer.encode(str(body.get("prompt", "")))
    answer: dict = {"count": len(ids), "max_model_len": config.max_model_len, "tokens": ids}
    if parse_version(config.vllm_version) >= (0, 9, 1):
        strings = body.get("return_token_strs") is True
        answer["token_strs"] = [tokenizer.token_string(t) for t in ids] if strings else None
    conn.respond(200, JSON_HEADERS, orjson.dumps(answer))


def _detokenize(body: dict, config: NodeConfig, conn: HttpConnection) -> None:
    if "tokens" not in body:
        raise _invalid([{"type": "missing", "loc": ("body", "tokens"), "msg": "Field required",
                         "input": body}])
    try:
        tokens = _TOKEN_IDS.validate_python(body["tokens"])
    except ValidationError as e:
        raise _invalid([{"type": err["type"], "loc": ("body", "tokens", *err["loc"]),
                         "msg": err["msg"], "input": err["input"]} for err in e.errors()]) \
            from None
    conn.respond(200, JSON_HEADERS, orjson.dumps({"prompt": config.tokenizer.decode(tokens)}))


def _invalid(errors: list[dict]) -> BadRequest:
    """A body that fails vLLM's request model: its validation handler answers 400 with
    pydantic's errors as the message, and the status phrase as the type."""
    return BadRequest(400, str(errors), "Bad Request")
