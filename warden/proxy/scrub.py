"""Upstream error texts that show a client the server's insides, withheld.

vLLM's error bodies carry what its exception said: a Python traceback, source paths, the
engine's internals (`EngineCore encountered an issue. See stack trace (above)...`), CUDA
errors, exception reprs, heap addresses (Pillow's "cannot identify image file <_io.BytesIO
object at 0x7f...>", which defeated ASLR: CVE-2026-22778). Such a text is replaced by a
generic one in the OpenAI error envelope, with the same status and the request's id (the
flight recorder's record keeps the original, in `error` and, when responses are kept, the
body itself).

Cost rule: only non-2xx responses that are not event streams are held and looked at (a
2xx costs one comparison in the relay); the look is one regex search of at most
`HOLD_LIMIT` bytes. An event stream's error events pass as the backend framed them: reading
them would mean decoding every chunk of every stream.
"""

from __future__ import annotations

import re

import orjson

from warden.edge.contracts import ClientStream
from warden.errors import error_envelope
from warden.proxy.headers import parse_head, response_head
from warden.upstream.target import UpstreamTarget

# The most of an error body held to look at; a longer one is withheld whole (vLLM's own
# errors are a few hundred bytes: a longer body is a traceback or a page of one).
HOLD_LIMIT = 64 * 1024
# What the record keeps of the original text, at most.
RECORD_LIMIT = 4096

# What only a server's insides say: withheld from any error (a 4xx too: a heap address in
# a 400's text defeated ASLR, CVE-2026-22778).
_INSIDES = (
    rb"Traceback \(most recent call last\)"
    rb"|File \"[^\"\n]{1,500}\", line \d"        # a traceback's frame
    rb"|(?:site|dist)-packages"
    rb"|/[\w.-]{1,100}(?:/[\w.-]{1,100}){1,30}\.py\b"  # a source path
    rb"|EngineCore|EngineDeadError|EngineGenerateError|AsyncEngineDeadError"
    rb"|CUDA error|CUDA out of memory|CUBLAS_STATUS|cuDNN error|NCCL error"
    rb"|device-side assert"
    rb"|<[\w.]{1,200} object at 0x[0-9A-Fa-f]{1,16}>"  # an object's repr: a heap address
)
# Exception reprs: withheld from a 5xx only. vLLM's 400s word its validation this way
# (`ValueError('Stream options can only be defined when stream=True')`), and a client needs
# those words to fix its request.
_REPRS = (
    rb"|<class '[\w.]{1,200}'>"                  # an exception's class, repr'd
    rb"|\b(?:[a-z_][a-z0-9_]{0,50}\.){1,10}[A-Z]\w{0,60}(?:Error|Exception)\b"  # torch.x.Error
    rb"|\b[A-Z]\w{0,60}(?:Error|Exception)\(['\"]"  # ValueError('...'), an exception's repr
)
_INTERNALS = re.compile(_INSIDES + _REPRS)
_INSIDES_ONLY = re.compile(_INSIDES)
_PLAIN_TYPE = re.compile(r"[A-Za-z_]{1,64}")


class HeldError:
    """A non-2xx response's body, held to its end (at most `HOLD_LIMIT` bytes of it)."""

    def __init__(self, headers: list[tuple[bytes, bytes]]):
        self.headers = headers
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.size < HOLD_LIMIT:
            self.parts.append(chunk)
        self.size += len(chunk)

    def answer(self, client: ClientStream, status: int, request_id: bytes,
               target: UpstreamTarget, expose: bool, extra: bytes = b"") -> str | None:
        """Answer the client with the body, or with a generic envelope in its place; returns
        the original error for the record when it was withheld (else None). `extra`: header
        lines of the gateway's to add."""
        body = b"".join(self.parts)
        headers = self.headers
        instead = withheld(body, status, request_id, self.size <= HOLD_LIMIT)
        original = None
        if instead is not None:
            original = "upstream error text withheld from the client: " + recorded_text(body)
            body = instead
            headers = [h for h in headers if h[0] != b"content-type"]
            headers.append((b"content-type", b"application/json"))
        block, _, _ = response_head(headers, status, request_id, target, expose)
        client.respond(status, block + extra, body)
        return original


def hold(head: bytes) -> HeldError | None:
    """A holder for an error response's body, unless it is an event stream."""
    headers = parse_head(head)
    for name, value in headers:
        if name == b"content-type" and value.startswith(b"text/event-stream"):
            return None
    return HeldError(headers)


def cut_answer(reason: str, code: str, request_id: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of the 502 a client gets when a held error body is cut off."""
    return (b"content-type: application/json\r\nx-request-id: " + request_id + b"\r\n",
            error_envelope(reason, "upstream_error", None, code))


def cut_event(reason: str, code: str) -> bytes:
    """The SSE error event a streaming client gets when its stream is cut off."""
    return b"data: " + orjson.dumps({"error": {
        "message": reason, "type": "upstream_error", "param": None, "code": code,
    }}) + b"\n\n"


def leaks_internals(body: bytes, status: int = 500) -> bool:
    return (_INTERNALS if status >= 500 else _INSIDES_ONLY).search(body) is not None


def withheld(body: bytes, status: int, request_id: bytes, complete: bool) -> bytes | None:
    """The envelope a client gets instead of `body` (a non-2xx error body), or None when the
    body may pass as it is. `complete`: the whole body was held (a longer one is withheld)."""
    if complete and not leaks_internals(body, status):
        return None
    error = _original_error(body)
    kind = error.get("type")
    if not (isinstance(kind, str) and _PLAIN_TYPE.fullmatch(kind)
            and not leaks_internals(kind.encode())):
        kind = "InternalServerError" if status >= 500 else "BadRequestError"
    param = error.get("param")
    if not (isinstance(param, str) and len(param) <= 200 and not leaks_internals(
            param.encode())):
        param = None
    happened = "failed while processing this request" if status >= 500 \
        else "refused this request"
    message = (f"The model server {happened}. Its error text was withheld because it "
               "described the server's internals; the gateway's records keep it under "
               f"request id {request_id.decode('latin-1')}.")
    return error_envelope(message, kind, param, status)


def recorded_text(body: bytes) -> str:
    """The original error as the record keeps it: its message (or the body), bounded."""
    message = _original_error(body).get("message")
    text = message if isinstance(message, str) else body.decode("utf-8", "replace")
    return text[:RECORD_LIMIT]


def _original_error(body: bytes) -> dict:
    """The error object of an OpenAI envelope, or of vLLM's older flat one; else {}."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    inner = parsed.get("error")
    return inner if isinstance(inner, dict) else parsed
