"""Through Warden, the openai SDK gets what it gets from vLLM directly: the same responses and
SSE events (byte for byte, but for ids and times), the same usage, the same errors; a client
that leaves aborts the generation; the scraper reads the engine's real /metrics."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from http.client import HTTPConnection

import openai
import pytest

from tests.harness import http, wait_until

# Greedy decoding: the same request gives the same tokens on the same engine.
GREEDY = {"temperature": 0, "max_tokens": 12, "seed": 1}
CHAT = [{"role": "user", "content": "Say something about gateways."}]
# What differs between two runs of one request: its id (vLLM derives it from X-Request-Id,
# which Warden sets) and its creation time.
_VOLATILE = re.compile(rb'"id":"[^"]*"|"created":\d+')


def _normal(data: bytes) -> bytes:
    return _VOLATILE.sub(b'"volatile"', data)


def _dump(obj) -> dict:
    out = obj.model_dump()
    out.pop("id", None)
    out.pop("created", None)
    return out


def _clients(engine, gateway) -> tuple[openai.OpenAI, openai.OpenAI]:
    direct = openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    through = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    return direct, through


def _post_raw(base: str, path: str, body: dict) -> tuple[int, bytes]:
    """The exact bytes of a response body (de-chunked), read to its end."""
    url = urllib.parse.urlsplit(base)
    conn = HTTPConnection(url.hostname, url.port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_chat_and_completions_match_direct(engine, gateway):
    direct, through = _clients(engine, gateway)
    for call in (
        lambda c: c.chat.completions.create(model=engine.model, messages=CHAT, **GREEDY),
        lambda c: c.completions.create(model=engine.model, prompt="The gateway", **GREEDY),
    ):
        expected, got = call(direct), call(through)
        assert _dump(got) == _dump(expected)
        assert got.usage.completion_tokens == GREEDY["max_tokens"]


def test_sdk_streams_match_direct(engine, gateway):
    direct, through = _clients(engine, gateway)

    def chunks(client):
        stream = client.chat.completions.create(
            model=engine.model, messages=CHAT, stream=True,
            stream_options={"include_usage": True}, **GREEDY)
        return [_dump(chunk) for chunk in stream]

    expected, got = chunks(direct), chunks(through)
    assert got == expected
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert got[-1]["choices"] == [] and got[-1]["usage"]["completion_tokens"] == 12


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": CHAT}),
    ("/v1/completions", {"prompt": "The gateway"}),
])
def test_sse_bytes_match_direct(engine, gateway, path, body):
    """Byte for byte, framing of events included, but for ids and creation times."""
    request = {"model": engine.model, "stream": True,
               "stream_options": {"include_usage": True}, **GREEDY, **body}
    status, expected = _post_raw(engine.url, path, request)
    assert status == 200
    status, got = _post_raw(gateway.url, path, request)
    assert status == 200
    assert _normal(got) == _normal(expected)
    assert got.endswith(b"data: [DONE]\n\n")


def test_vllm_errors_pass_through_unchanged(engine, gateway):
    """An error vLLM answers (here: a prompt past the context length, which the guard cannot
    see without the tokenizer) reaches the client as vLLM wrote it."""
    body = {"model": engine.model, "prompt": "gateway " * 2000, "max_tokens": 4}
    status, expected = _post_raw(engine.url, "/v1/completions", body)
    assert status == 400, expected
    status, got = _post_raw(gateway.url, "/v1/completions", body)
    assert status == 400
    assert got == expected
    direct, through = _clients(engine, gateway)
    for client in (direct, through):
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model=engine.model, prompt="gateway " * 2000,
                                      max_tokens=4)


def test_unknown_model_is_the_same_404(engine, gateway):
    """Warden answers an unknown model itself (no engine serves it): the same status, param
    and message as vLLM's, but for the list of valid names vLLM 0.32 appends (a gateway does
    not tell every client the whole fleet's models); the envelope's `type`/`code` are
    OpenAI's (`model_not_found`) where vLLM writes `NotFoundError`/404."""
    direct, through = _clients(engine, gateway)
    errors = []
    for client in (direct, through):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="nope", messages=CHAT, max_tokens=2)
        errors.append(caught.value)
    assert errors[0].status_code == errors[1].status_code == 404
    assert errors[1].body["message"] == "The model `nope` does not exist."
    assert errors[0].body["message"].startswith(errors[1].body["message"])
    assert errors[1].body["param"] == errors[0].body["param"] == "model"


def test_client_leaving_aborts_the_generation(engine, gateway):
    """The upstream request is closed when the client goes, and vLLM stops generating. (vLLM
    0.32 counts an aborted request in no `request_success_total` reason, `abort` included: it
    shows as a generation that stopped short, and no `length` finish.) How short depends on
    how soon this process, which also runs the gateway, gets to close: only `< asked` is
    certain on a busy 2-core machine."""
    asked = 480  # all the context (512) leaves after the prompt
    generated = engine.metric("vllm:generation_tokens_total")
    finished = engine.metric("vllm:request_success_total")
    _, through = _clients(engine, gateway)
    stream = through.chat.completions.create(
        model=engine.model, messages=CHAT, stream=True, max_tokens=asked,
        extra_body={"ignore_eos": True})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    wait_until(lambda: engine.metric("vllm:num_requests_running") == 0, timeout=30,
               what="the engine to drop the request")
    assert engine.metric("vllm:generation_tokens_total") - generated < asked
    assert engine.metric("vllm:request_success_total") == finished
    gateway.wait_idle()
    assert gateway.metric("warden_stream_verdicts_total", 'verdict="client_abort"') == 1


def test_scraper_reads_the_real_metrics(engine, gateway):
    """Every load signal load-aware routing uses is found in a real engine's /metrics, and
    the engine's version in its /version. The scrape read is one taken once the engine was
    idle (an earlier test's aborted request may still have been running at the one before)."""
    wait_until(lambda: engine.metric("vllm:num_requests_running") == 0
               and engine.metric("vllm:num_requests_waiting") == 0, timeout=30,
               what="the engine to be idle")
    idle_since = time.monotonic()  # the gateway runs in this process: the same clock

    def scraped_since_idle():
        _, _, body = http("GET", f"{gateway.url}/admin/backends")
        backend = json.loads(body)["backends"][0]
        load = backend["load"]
        fresh = load is not None and load["age"] < time.monotonic() - idle_since
        return backend if fresh else None

    backend = wait_until(scraped_since_idle, timeout=30, what="a scrape of the idle engine")
    load = backend["load"]
    assert load["missing"] == []
    assert 0.0 <= load["kv_cache_usage"] <= 1.0
    assert load["waiting"] == 0 and load["running"] == 0
    assert backend["models"] == [engine.model]
    version = gateway.call(lambda: gateway.gateway.backends.named("vllm-0").vllm_version)
    assert version == engine.version()
