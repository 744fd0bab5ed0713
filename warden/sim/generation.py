"""One generation's response in vLLM's format: SSE events as tokens come, or one body."""

from __future__ import annotations

import asyncio
import time

import orjson

from warden.edge.connection import HttpConnection
from warden.edge.wire import header_block
from warden.guard.lax import lax_bool
from warden.sim import vllm_format as fmt
from warden.sim.engine import SimEngine
from warden.sim.scheduler import Sequence

SERVER = (b"server", b"uvicorn")
JSON_HEADERS = header_block((b"content-type", b"application/json"), SERVER)
SSE_HEADERS = header_block((b"content-type", b"text/event-stream; charset=utf-8"), SERVER)


# What vLLM answers once its engine is dead (EngineDeadError), to every request.
ENGINE_DEAD = orjson.dumps({"error": {
    "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
    "type": "InternalServerError", "param": None, "code": 500}})


class Generation:
    """Turns engine tokens into one response: SSE events as they come, or one body. `done`
    resolves when the response has ended (finished, failed or its client left)."""

    def __init__(self, kind: str, base_id: str, body: dict, prompt_tokens: int, version: str,
                 conn: HttpConnection):
        prefix = {"chat": "chatcmpl-", "completion": "cmpl-", "responses": "resp_"}[kind]
        self.kind = kind
        self.rid = prefix + base_id
        self.model = body["model"]
        self.created = int(time.time())
        # Read as vLLM's pydantic models read them (lax: "true", 1 and "on" are True).
        self.stream = lax_bool(body.get("stream")) is True and kind != "responses"
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) \
            and lax_bool(options.get("include_usage", True)) is True  # (vLLM's default)
        self.prompt_tokens = prompt_tokens
        self.version = version
        self.conn = conn
        self.pieces: list[str] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_token(self, text: str, finish: str | None) -> None:
        if self.done.done():
            return
        self.pieces.append(text)
        if self.stream:
            self._event(text, finish)
        elif finish is not None:
            self._whole(finish)
        if finish is not None:
            self.done.set_result(None)

    def fail(self, body: bytes = ENGINE_DEAD) -> None:
        """End the response with an error: an error event and [DONE] once the stream has
        begun (as vLLM does), else a 500."""
        if self.done.done():
            return
        if self.stream and self.pieces:
            self.conn.write(b"data: " + body + b"\n\n" + fmt.SSE_DONE)
            self.conn.end_response()
        else:
            self.conn.respond(500, JSON_HEADERS, body)
        self.done.set_result(None)

    def end(self) -> None:
        """The client left: nothing more to send."""
        if not self.done.done():
            self.done.set_result(None)

    def _event(self, text: str, finish: str | None) -> None:
        conn, rid, created, model = self.conn, self.rid, self.created, self.model
        if len(self.pieces) == 1:
            conn.start_response(200, SSE_HEADERS)
            if self.kind == "chat":
                conn.write(fmt.sse(fmt.chat_role_chunk(rid, created, model)))
        if self.kind == "chat":
            chunk = fmt.chat_content_chunk(rid, created, model, text, finish)
        else:
            chunk = fmt.completion_chunk(rid, created, model, text, finish)
        if finish is None:
            conn.write(fmt.sse(chunk))
            return
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        if self.include_usage:
            conn.write(fmt.sse(chunk) + fmt.sse(fmt.usage_chunk(
                rid, obj, created, model, self.prompt_tokens, len(self.pieces), self.version)))
        else:
            chunk["system_fingerprint"] = fmt.fingerprint(self.version)
            conn.write(fmt.sse(chunk))
        conn.write(fmt.SSE_DONE)
        conn.end_response()

    def _whole(self, finish: str) -> None:
        text = "".join(self.pieces)
        args = (self.rid, self.created, self.model, text, finish, self.prompt_tokens,
                len(self.pieces), self.version)
        if self.kind == "chat":
            body = fmt.chat_completion(*args)
        elif self.kind == "completion":
            body = fmt.text_completion(*args)
        else:
            body = {"id": self.rid, "object": "response", "created_at": self.created,
                    "model": self.model, "status": "completed",
                    "output": [{"type": "message", "role": "assistant", "status": "completed",
                                "content": [{"type": "output_text", "text": text,
                                             "annotations": []}]}],
                    "usage": {"input_tokens": self.prompt_tokens,
                              "output_tokens": len(self.pieces),
                              "total_tokens": self.prompt_tokens + len(self.pieces)}}
        self.conn.respond(200, JSON_HEADERS, orjson.dumps(body))


class GenerationWatcher:
    """Watches the client of one generation: a disconnect aborts the sequence, as vLLM
    aborts a request whose client went away."""

    __slots__ = ("engine", "generation", "seq")

    def __init__(self, engine: SimEngine, seq: Sequence, generation: Generation):
        self.engine = engine
        self.seq = seq
        self.generation = generation

    def on_client_lost(self) -> None:
        self.engine.abort(self.seq)
        self.generation.end()

    def on_client_pause(self) -> None:
        pass

    def on_client_resume(self) -> None:
        pass
