"""The official openai SDK through Warden to `warden sim`, as a user would use it."""

from __future__ import annotations

import json

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.harness import http

MESSAGES = [{"role": "user", "content": "Tell me about the fleet"}]


@pytest.fixture
def client(gateway):
    return OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def test_chat_non_stream(client):
    raw = client.chat.completions.with_raw_response.create(model="sim-model",
                                                           messages=MESSAGES, max_tokens=5)
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].message.content
    assert raw.headers["x-upstream-status"] == "200"
    assert raw.headers["x-upstream-addr"].startswith("127.0.0.1:")


def test_chat_stream_with_usage(client):
    chunks = list(client.chat.completions.create(
        model="sim-model", messages=MESSAGES, stream=True, max_tokens=7,
        stream_options={"include_usage": True}))
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert content[0] == ""  # vLLM's role chunk
    assert len([c for c in content[1:] if c]) == 7
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "length" and set(finish[:-1]) == {None}


def test_stream_and_non_stream_agree(client):
    """Same request body, same deterministic sim output: streaming must not lose a byte."""
    whole = client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=9)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="sim-model", messages=MESSAGES, max_tokens=9, stream=True) if c.choices)
    assert streamed == whole.choices[0].message.content


def test_completions_embeddings_models(client):
    completion = client.completions.create(model="sim-model", prompt="Once upon", max_tokens=3)
    assert completion.usage.completion_tokens == 3
    streamed = list(client.completions.create(model="sim-model", prompt="Once upon",
                                              max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == completion.choices[0].text
    embeddings = client.embeddings.create(model="sim-model", input=["a", "b", "c"])
    assert [e.index for e in embeddings.data] == [0, 1, 2]
    assert [m.id for m in client.models.list()] == ["sim-model"]


def test_unknown_model_is_openai_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


def test_upstream_client_error_passes_through(client):
    """vLLM's own 400 reaches the client unchanged, with the backend's status visible."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.with_raw_response.create(model="sim-model", messages=MESSAGES,
                                                         max_tokens=100_000)
    assert "max_model_len" in caught.value.body["message"]
    assert caught.value.response.headers["x-upstream-status"] == "400"


async def test_async_client_stream(gateway):
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                  stream=True, max_tokens=4)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert len([p for p in pieces if p]) == 4
    completion = await client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                      max_tokens=2)
    assert completion.usage.completion_tokens == 2
    await client.close()


def test_request_id_travels_to_vllm(gateway, fleet, client):
    raw = client.chat.completions.with_raw_response.create(
        model="sim-model", messages=MESSAGES, max_tokens=1,
        extra_headers={"X-Request-Id": "trace-42"})
    assert raw.headers["x-request-id"] == "trace-42"
    # vLLM builds its own id from X-Request-Id, so engine logs join gateway records: the
    # client's id, made unique (two requests with one id must never meet in an engine).
    assert raw.parse().id.startswith("chatcmpl-trace-42.")
    again = client.chat.completions.with_raw_response.create(
        model="sim-model", messages=MESSAGES, max_tokens=1,
        extra_headers={"X-Request-Id": "trace-42"})
    assert again.headers["x-request-id"] == "trace-42"
    seen = [rid for ids in fleet.request_ids(as_sent=True).values() for rid in ids
            if "trace-42" in rid]
    assert len(seen) == 2 and len(set(seen)) == 2, seen
    assert all(rid.startswith("trace-42.") for rid in seen)


def test_request_id_generated_when_absent(gateway):
    status, headers, body = http("POST", f"{gateway.url}/v1/chat/completions",
                                 json.dumps({"model": "sim-model", "messages": MESSAGES,
                                             "max_tokens": 1}).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 200
    request_id = headers["x-request-id"]
    assert request_id and json.loads(body)["id"] == f"chatcmpl-{request_id}"


def test_ignore_eos_runs_to_max_tokens(client):
    """vLLM's extension passes through the gateway; the sim honours it as vLLM does."""
    natural = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                             max_tokens=40)
    assert natural.choices[0].finish_reason == "stop" and natural.usage.completion_tokens < 40
    forced = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                            max_tokens=40, extra_body={"ignore_eos": True})
    assert forced.choices[0].finish_reason == "length"
    assert forced.usage.completion_tokens == 40


def test_tokenize_and_detokenize_pass_through(gateway):
    """vLLM's /tokenize and /detokenize reach a backend serving the model, as they are."""
    status, _, body = http("POST", f"{gateway.url}/tokenize", json.dumps(
        {"model": "sim-model", "prompt": "a b c"}).encode(), {"Content-Type": "application/json"})
    tokens = json.loads(body)
    assert status == 200 and tokens["count"] == len(tokens["tokens"]) > 0
    assert tokens["max_model_len"] > 0
    status, _, body = http("POST", f"{gateway.url}/detokenize", json.dumps(
        {"model": "sim-model", "tokens": [1, 2]}).encode(), {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == {"prompt": "t1 t2"}
