"""Upstream error texts that show the server's insides are withheld at the relay (same status,
the OpenAI envelope, the request id), the original kept for the record and the forensics;
vLLM's ordinary error messages, every 2xx and every event stream pass as they came."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.test_relay import BACKEND, REQUEST, Ends, FakeClient, upstream_connection
from warden.config.schema import TimeoutsSpec
from warden.exchange import Capture
from warden.proxy import scrub
from warden.proxy.relay import Relay
from warden.upstream.sink import BodyMode

TRACEBACK = orjson.dumps({"error": {
    "message": "Traceback (most recent call last):\n  File \"/usr/lib/python3.12/site-packages"
               "/vllm/entrypoints/openai/serving_chat.py\", line 487, in generator\n"
               "RuntimeError: CUDA error: device-side assert triggered",
    "type": "InternalServerError", "param": None, "code": 500}})
ENGINE_DEAD = orjson.dumps({"error": {
    "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
    "type": "InternalServerError", "param": None, "code": 500}})
TOO_LONG = orjson.dumps({"error": {
    "message": "This model's maximum context length is 512 tokens. However, your prompt "
               "contains at least 513 input tokens. (parameter=input_tokens, value=513)",
    "type": "BadRequestError", "param": "input_tokens", "code": 400}})
NO_MODEL = orjson.dumps({"error": {"message": "The model `nope` does not exist.",
                                   "type": "NotFoundError", "param": "model", "code": 404}})


class Client(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.answer: tuple[int, bytes, bytes] | None = None

    def respond(self, status, headers, body):
        self.answer = (status, headers, body)


def make(scrub_errors: bool = True, capture: int = Capture.NONE):
    client = Client()
    owner = Ends(TimeoutsSpec(), capture)
    owner.scrub_errors = scrub_errors
    relay = Relay(REQUEST, client, b"req-7", owner)
    relay.send(BACKEND, upstream_connection(), [b"POST / HTTP/1.1\r\n\r\n", b""], 100.0)
    return relay, client, owner


def head(status: int, content_type: bytes = b"application/json", length: int | None = None):
    framing = b"transfer-encoding: chunked\r\n" if length is None \
        else b"content-length: %d\r\n" % length
    return b"HTTP/1.1 %d X\r\ncontent-type: %b\r\nserver: uvicorn\r\n%b" % (
        status, content_type, framing)


def respond(relay: Relay, status: int, *pieces: bytes, content_type=b"application/json"):
    mode = relay.on_head(status, head(status, content_type, sum(map(len, pieces))))
    assert mode == BodyMode.DECODED
    for piece in pieces:
        relay.on_body(piece)
    relay.on_complete()


@pytest.mark.parametrize("body", [TRACEBACK, ENGINE_DEAD], ids=["traceback", "engine-dead"])
def test_a_500_that_shows_internals_is_withheld(body):
    relay, client, owner = make(capture=Capture.BODIES)
    respond(relay, 500, body[:40], body[40:])  # (split mid-text: judged whole)
    status, headers, sent = client.answer
    error = orjson.loads(sent)["error"]
    assert status == 500 and error["code"] == 500 and error["type"] == "InternalServerError"
    assert "withheld" in error["message"] and "req-7" in error["message"]
    assert b"EngineCore" not in sent and b"Traceback" not in sent
    assert b"content-type: application/json\r\n" in headers and b"x-request-id: req-7" in headers
    assert b"x-upstream-status: 500" in headers
    assert relay.error.startswith("upstream error text withheld from the client: ")
    assert orjson.loads(body)["error"]["message"][:30] in relay.error
    assert b"".join(relay.captured) == body  # the record and the forensics read the original
    assert owner == ["upstream_complete"]


@pytest.mark.parametrize(("status", "body", "content_type"), [
    (400, TOO_LONG, b"application/json"), (404, NO_MODEL, b"application/json"),
    (500, b"Internal Server Error", b"text/plain; charset=utf-8"),
    (503, b'{"error": {"message": "The engine is currently busy"}}', b"application/json"),
], ids=["context-length", "no-model", "plain-500", "busy"])
def test_ordinary_error_messages_pass_as_they_came(status, body, content_type):
    relay, client, _ = make()
    respond(relay, status, body, content_type=content_type)
    sent_status, headers, sent = client.answer
    assert (sent_status, sent) == (status, body) and relay.error is None
    assert b"content-type: " + content_type in headers


def test_a_2xx_and_an_error_stream_are_never_held():
    relay, client, _ = make()
    assert relay.on_head(200, head(200, length=2)) == BodyMode.RAW and relay.held is None
    relay, client, _ = make()
    assert relay.on_head(500, head(500, b"text/event-stream")) == BodyMode.RAW_OBSERVED
    assert relay.held is None and client.raw


def test_off_by_config_the_body_passes():
    relay, client, _ = make(scrub_errors=False)
    assert relay.on_head(500, head(500, length=len(TRACEBACK))) == BodyMode.RAW
    assert relay.held is None and client.raw


def test_vllms_older_flat_error_is_withheld_with_its_type():
    relay, client, _ = make()
    respond(relay, 400, orjson.dumps({"object": "error", "type": "BadRequestError",
                                      "message": "bad: <_io.BytesIO object at 0x7f3a2b>",
                                      "param": "x", "code": 400}))
    error = orjson.loads(client.answer[2])["error"]
    assert error["type"] == "BadRequestError" and error["param"] == "x" and error["code"] == 400
    assert "refused this request" in error["message"]


def test_a_400_worded_as_an_exception_reaches_the_client_a_500_does_not():
    # vLLM words its validation errors as exception reprs: the client needs those words
    text = "Value error, ValueError('Stream options can only be defined when stream=True.')"
    for status, passes in ((400, True), (500, False)):
        relay, client, _ = make()
        body = orjson.dumps({"error": {"message": text, "type": "BadRequestError",
                                       "param": None, "code": status}})
        respond(relay, status, body)
        assert (client.answer[2] == body) is passes


def test_a_body_too_long_to_examine_is_withheld_whole():
    relay, client, _ = make()
    respond(relay, 500, b'{"error": {"message": "' + b"x" * scrub.HOLD_LIMIT, b'"}}')
    status, _, sent = client.answer
    assert status == 500 and b"withheld" in sent and len(sent) < 1000


def test_a_held_body_cut_off_gets_a_502_answer():
    relay, client, owner = make()
    relay.on_head(500, head(500))
    relay.on_body(b'{"error": ')
    relay.on_lost("connection reset by the backend")
    status, headers, sent = client.answer
    assert status == 502 and relay.status == 502 and not client.aborted
    assert b"x-request-id: req-7" in headers
    assert orjson.loads(sent)["error"]["message"] == "connection reset by the backend"
    assert owner == ["upstream_lost"]


@pytest.mark.parametrize("text", [
    "CUDA out of memory. Tried to allocate 2.00 GiB",
    "torch.OutOfMemoryError: oom", "ValueError('bad shape')",
    "<class 'vllm.v1.engine.exceptions.EngineDeadError'>",
    "see /opt/venv/lib/python3.11/vllm/engine/core.py for details",
    "cannot identify image file <_io.BytesIO object at 0x7f3b2c1d5e90>",  # CVE-2026-22778
])
def test_what_counts_as_internals(text):
    assert scrub.leaks_internals(text.encode())


@pytest.mark.parametrize("text", [
    "max_tokens=100000 cannot be greater than max_model_len=512.",
    "The model `/models/llama-3` does not exist.", "Field required: messages",
    "BadRequestError", "please reduce the length of the messages or completion.",
])
def test_ordinary_messages_are_not_internals(text):
    assert not scrub.leaks_internals(text.encode())
