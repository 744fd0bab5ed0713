"""Exchanges rendered as audit records (pure: objects in, JSON-ready dicts out; no I/O).

Runs on the writer thread, so the proxy pays nothing for it. Each request gets two records with
the same `id`: `start` (what was asked: written before the request is forwarded) and `end`
(what became of it). Times are UTC ISO 8601 with microseconds; `wall` converts the gateway's
monotonic clock (`wall = monotonic + offset`).

Rules: a secret header is never written, whatever the config lists; a body is written as it
came (UTF-8 text, or base64 when it is not UTF-8), unless it is larger than the record limit
or the disk is low, in which case its size and SHA-256 stand in for it.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import orjson

from warden.proxy.exchange import Exchange
from warden.stream.sse import SseDecoder

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "openai-api-key",
})
REDACTED = "[redacted]"


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")


def start_record(exchange: Exchange, offset: float, headers: tuple[str, ...],
                 body_limit: int) -> dict:
    """`body_limit`: the largest body written verbatim (0: none, the disk is low)."""
    request = exchange.request
    record = {
        "type": "start", "id": exchange.request_id.decode("latin-1"),
        "received": iso(exchange.received_at + offset), "client": exchange.client_ip,
        "principal": None, "endpoint": exchange.endpoint, "model": exchange.model,
        "stream": exchange.stream,
    }
    if request is not None:
        record["method"] = request.method
        record["headers"] = {name: REDACTED if name in SECRET_HEADERS else value.decode(
            "latin-1") for name in headers
            if (value := request.header(name.encode())) is not None}
        record.update(body_fields(request.body, body_limit,
                                  "low disk" if body_limit == 0 else "too large"))
    return record


def body_fields(body: bytes, limit: int, reason: str) -> dict:
    if len(body) > limit:
        return {"body": None, "body_bytes": len(body), "body_omitted": reason,
                "body_sha256": hashlib.sha256(body).hexdigest()}
    try:
        return {"body": body.decode("utf-8"), "body_bytes": len(body)}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "body_encoding": "base64",
                "body_bytes": len(body)}


def end_record(exchange: Exchange, offset: float, response: str) -> dict:
    """`response`: none | summary | full (the recorder's setting)."""
    record = {
        "type": "end", "id": exchange.request_id.decode("latin-1"),
        "done": iso(exchange.ended_at + offset), "model": exchange.model,
        "backend": exchange.backend, "attempts": list(exchange.attempts),
        "status": exchange.status, "verdict": exchange.verdict,
        "duration": round(exchange.ended_at - exchange.received_at, 6),
        "ttft": None if exchange.ttft is None else round(exchange.ttft, 6),
        "error": exchange.error,
    }
    if exchange.sent_at:
        record["sent"] = iso(exchange.sent_at + offset)
    if exchange.first_byte_at:
        record["first_byte"] = iso(exchange.first_byte_at + offset)
    if response != "none":
        record.update(response_fields(exchange, response == "full"))
    return record


def response_fields(exchange: Exchange, full: bool) -> dict:
    """Usage and finish reasons (a stream's come from its observer; a plain response's from
    its captured body), and with `full` the body, or a stream's text reassembled."""
    captured = exchange.captured
    body = b"".join(captured) if captured else b""
    out: dict = {"usage": exchange.usage, "finish_reasons": list(exchange.finish_reasons)}
    if exchange.stream:
        if full:
            out["text"] = stream_text(body) if captured is not None else None
        return out
    parsed = _json(body)
    if isinstance(parsed, dict):
        if isinstance(parsed.get("usage"), dict):
            out["usage"] = parsed["usage"]
        out["finish_reasons"] = [c.get("finish_reason") for c in parsed.get("choices") or ()
                                 if isinstance(c, dict) and c.get("finish_reason")]
    if full:
        out["response"] = body.decode("utf-8", "replace") if captured is not None else None
    if exchange.capture_truncated:
        out["response_truncated"] = True
    return out


def stream_text(body: bytes) -> str:
    """The text of an OpenAI SSE stream (chat deltas or completion text), reassembled."""
    parts = []
    for payload in SseDecoder().feed(body + b"\n\n"):
        event = _json(payload)
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def _json(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
