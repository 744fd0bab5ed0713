"""A simulated vLLM server's endpoints that answer at once, with no engine step: embeddings,
tokenize, detokenize (the generating ones are the node's: warden.sim.node)."""

from __future__ import annotations

import os
import time

import orjson
from pydantic import TypeAdapter, ValidationError

from warden.edge.server import HttpConnection
from warden.sim import vllm_format as fmt
from warden.sim.generation import JSON_HEADERS
from warden.sim.requests import BadRequest, embed
from warden.sim.tokenizer import count_tokens, encode, encode_chat

ANSWERED_AT_ONCE = frozenset(("/v1/embeddings", "/tokenize", "/detokenize"))

_TOKEN_IDS = TypeAdapter(list[int])  # vLLM's DetokenizeRequest.tokens (pydantic, lax)


def answer(path: str, body: dict, max_model_len: int, conn: HttpConnection) -> None:
    """Answer a request to one of `ANSWERED_AT_ONCE` (its body parsed, its model served)."""
    if path == "/v1/embeddings":
        _embeddings(body, conn)
    elif path == "/tokenize":
        _tokenize(body, max_model_len, conn)
    else:
        _detokenize(body, conn)


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


def _tokenize(body: dict, max_model_len: int, conn: HttpConnection) -> None:
    messages = body.get("messages")
    ids = encode_chat(messages) if isinstance(messages, list) \
        else encode(str(body.get("prompt", "")))
    conn.respond(200, JSON_HEADERS, orjson.dumps({
        "count": len(ids), "max_model_len": max_model_len, "tokens": ids, "token_strs": None}))


def _detokenize(body: dict, conn: HttpConnection) -> None:
    if "tokens" not in body:
        raise _invalid([{"type": "missing", "loc": ("body", "tokens"), "msg": "Field required",
                         "input": body}])
    try:
        tokens = _TOKEN_IDS.validate_python(body["tokens"])
    except ValidationError as e:
        raise _invalid([{"type": err["type"], "loc": ("body", "tokens", *err["loc"]),
                         "msg": err["msg"], "input": err["input"]} for err in e.errors()]) \
            from None
    conn.respond(200, JSON_HEADERS, orjson.dumps({"prompt": " ".join(
        f"t{t}" for t in tokens)}))


def _invalid(errors: list[dict]) -> BadRequest:
    """A body that fails vLLM's request model: its validation handler answers 400 with
    pydantic's errors as the message, and the status phrase as the type."""
    return BadRequest(400, str(errors), "Bad Request")
