"""One simulated vLLM OpenAI server: its HTTP endpoints over a `SimEngine`."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import deque
from dataclasses import dataclass, field

import orjson

from warden.edge.request import HttpRequest
from warden.edge.server import HttpConnection, HttpServer, ServerLimits
from warden.edge.wire import header_block
from warden.sim import vllm_format as fmt
from warden.sim.engine import EngineProfile, Sequence, SimEngine
from warden.sim.generation import JSON_HEADERS, SERVER, Generation
from warden.sim.metrics import NodeMetrics
from warden.sim.tokenizer import count_tokens, encode, encode_chat

PLAIN_HEADERS = header_block(SERVER)
TEXT_HEADERS = header_block((b"content-type", b"text/plain; version=1.0.0; charset=utf-8"),
                            SERVER)

_MAX_REMEMBERED_IDS = 100_000


@dataclass(frozen=True)
class NodeConfig:
    models: tuple[str, ...] = ("sim-model",)
    loras: tuple[str, ...] = ()          # LoRA adapters, served by name on top of models[0]
    vllm_version: str = "0.11.0"
    legacy_metric_names: bool = False    # vllm:gpu_cache_usage_perc etc. (before vLLM 0.10)
    max_model_len: int = 4096
    engine: EngineProfile = field(default_factory=EngineProfile)

    def __post_init__(self) -> None:
        capacity = self.engine.num_gpu_blocks * self.engine.block_size
        if self.max_model_len > capacity:  # vLLM refuses to start the same way
            raise ValueError(
                f"max_model_len ({self.max_model_len}) is larger than the KV cache can hold "
                f"({self.engine.num_gpu_blocks} blocks x {self.engine.block_size} tokens = "
                f"{capacity}); lower --max-model-len or raise --num-gpu-blocks")

    @property
    def served(self) -> tuple[str, ...]:
        return self.models + self.loras

    def cache_config(self) -> dict[str, str]:
        """vllm:cache_config_info's main labels (a subset of the real ones)."""
        e = self.engine
        return {"block_size": str(e.block_size), "cache_dtype": "auto",
                "enable_prefix_caching": str(e.enable_prefix_caching),
                "gpu_memory_utilization": "0.9", "num_gpu_blocks": str(e.num_gpu_blocks),
                "num_gpu_blocks_override": "None", "prefix_caching_hash_algo": "sha256",
                "sliding_window": "None"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None):
        super().__init__(message)
        self.body = fmt.error(message, type_, status, param)
        self.status = status


class _Stream:
    """Watches the client of one generation: a disconnect aborts the sequence, as vLLM
    aborts a request whose client went away."""

    __slots__ = ("done", "engine", "seq")

    def __init__(self, engine: SimEngine, done: asyncio.Future[None]):
        self.engine = engine
        self.done = done
        self.seq: Sequence | None = None

    def on_client_lost(self) -> None:
        if self.seq is not None:
            self.engine.abort(self.seq)
        if not self.done.done():
            self.done.set_result(None)

    def on_client_pause(self) -> None:
        pass

    def on_client_resume(self) -> None:
        pass


class SimNode:
    def __init__(self, index: int, host: str, port: int, config: NodeConfig, control):
        self.index = index
        self.host = host
        self.port = port
        self.config = config
        self._control = control
        self.alive = False
        self.request_ids: deque[str] = deque(maxlen=_MAX_REMEMBERED_IDS)
        self._server: HttpServer | None = None
        self._created = int(time.time())
        self._boot()

    def _boot(self) -> None:
        """A fresh engine and fresh metrics: what a (re)started vLLM has."""
        config = self.config
        self.metrics = NodeMetrics(config.models[0], config.vllm_version,
                                   legacy_names=config.legacy_metric_names,
                                   cache_config=config.cache_config(), loras=config.loras)
        self.engine = SimEngine(self.config.engine, asyncio.get_event_loop(), self.metrics)
        self.metrics.watch(self.engine)

    async def start(self) -> None:
        self._server = HttpServer(self, ServerLimits(keepalive_timeout=5.0))
        await self._server.start(self.host, self.port)
        self.alive = True

    async def kill(self) -> None:
        """Die like a crashed server: stop listening, reset every connection."""
        self.alive = False
        self.engine.stop()
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def revive(self) -> None:
        if self.alive:
            return
        self._boot()
        await self.start()

    # -- HTTP ------------------------------------------------------------------------------

    async def __call__(self, request: HttpRequest, conn: HttpConnection) -> None:
        path = request.path
        try:
            if path.startswith("/sim/"):
                status, body = await self._control(request, self)
                conn.respond(status, JSON_HEADERS, body)
            elif request.method == "GET":
                self._get(path, conn)
            elif request.method == "POST":
                await self._post(path, request, conn)
            else:
                raise BadRequest(405, "Method Not Allowed", "MethodNotAllowed")
        except BadRequest as e:
            conn.respond(e.status, JSON_HEADERS, e.body)

    def _get(self, path: str, conn: HttpConnection) -> None:
        if path == "/health":
            conn.respond(200, PLAIN_HEADERS, b"")
        elif path == "/version":
            conn.respond(200, JSON_HEADERS, orjson.dumps({"version": self.config.vllm_version}))
        elif path == "/v1/models":
            config = self.config
            cards = [fmt.model_card(m, self._created, config.max_model_len)
                     for m in config.models]
            cards += [fmt.model_card(lora, self._created, config.max_model_len,
                                     parent=config.models[0]) for lora in config.loras]
            conn.respond(200, JSON_HEADERS, orjson.dumps({"object": "list", "data": cards}))
        elif path == "/metrics":
            conn.respond(200, TEXT_HEADERS, self.metrics.render())
        else:
            conn.respond(404, JSON_HEADERS, b'{"detail":"Not Found"}')

    async def _post(self, path: str, request: HttpRequest, conn: HttpConnection) -> None:
        handler = {"/v1/chat/completions": self._generate, "/v1/completions": self._generate,
                   "/v1/embeddings": self._embeddings, "/tokenize": self._tokenize,
                   "/detokenize": self._detokenize, "/v1/responses": self._generate}.get(path)
        if handler is None:
            raise BadRequest(404, "Not Found", "NotFound")
        body = self._parse(request)
        await handler(path, request, body, conn)

    def _parse(self, request: HttpRequest) -> dict:
        rid = request.header(b"x-request-id")
        self.request_ids.append(rid.decode() if rid else "")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise BadRequest(400, "Invalid JSON body", "BadRequestError") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "Request body must be a JSON object", "BadRequestError")
        model = body.get("model", self.config.models[0])
        if model not in self.config.served:
            raise BadRequest(404, f"The model `{model}` does not exist.", "NotFoundError",
                             "model")
        body["model"] = model
        return body

    # -- generation ------------------------------------------------------------------------

    async def _generate(self, path: str, request: HttpRequest, body: dict,
                        conn: HttpConnection) -> None:
        chat = path == "/v1/chat/completions"
        prompt_ids = _prompt_ids(body, chat)
        prompt_tokens = len(prompt_ids)
        limit = self.config.max_model_len
        if prompt_tokens > limit:
            raise BadRequest(400, f"This model's maximum context length is {limit} tokens. "
                             f"However, your prompt contains at least {prompt_tokens} input "
                             "tokens, which exceeds this limit even without any output tokens. "
                             "Please reduce the length of the input prompt. "
                             f"(parameter=input_tokens, value={prompt_tokens})",
                             "BadRequestError", "input_tokens")
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") \
            or body.get("max_output_tokens") or (limit - prompt_tokens)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest(400, "max_tokens must be at least 1, got "
                             f"{max_tokens}.", "BadRequestError", "max_tokens")
        if max_tokens > limit:
            raise BadRequest(400, f"max_tokens={max_tokens} cannot be greater than "
                             f"max_model_len={limit}. Please request fewer output tokens. "
                             f"(parameter=max_tokens, value={max_tokens})",
                             "BadRequestError", "max_tokens")
        rid_header = request.header(b"x-request-id")
        base_id = rid_header.decode() if rid_header else os.urandom(8).hex()
        kind = "chat" if chat else ("responses" if path == "/v1/responses" else "completion")
        gen = Generation(kind, base_id, body, prompt_tokens, self.config.vllm_version, conn)
        done = asyncio.get_running_loop().create_future()
        watcher = _Stream(self.engine, done)
        lora = body["model"] if body["model"] in self.config.loras else None
        seq = Sequence(prompt_ids, min(max_tokens, limit - prompt_tokens),
                       self.config.engine.output_tokens, _seed(body), gen.on_token_then(done),
                       lora)
        watcher.seq = seq
        conn.watcher = watcher
        self.engine.submit(seq)
        await done

    async def _embeddings(self, path: str, request: HttpRequest, body: dict,
                          conn: HttpConnection) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest(400, "input must be a string or a list of strings",
                             "BadRequestError", "input")
        texts = [x if isinstance(x, str) else orjson.dumps(x).decode() for x in inputs]
        vectors = [_embed(t) for t in texts]
        tokens = sum(count_tokens(t) for t in texts)
        rid = "embd-" + os.urandom(8).hex()
        conn.respond(200, JSON_HEADERS, orjson.dumps(fmt.embedding_list(
            rid, int(time.time()), body["model"], vectors, tokens)))

    async def _tokenize(self, path: str, request: HttpRequest, body: dict,
                        conn: HttpConnection) -> None:
        messages = body.get("messages")
        ids = encode_chat(messages) if isinstance(messages, list) \
            else encode(str(body.get("prompt", "")))
        conn.respond(200, JSON_HEADERS, orjson.dumps({
            "count": len(ids), "max_model_len": self.config.max_model_len,
            "tokens": ids, "token_strs": None}))

    async def _detokenize(self, path: str, request: HttpRequest, body: dict,
                          conn: HttpConnection) -> None:
        tokens = body.get("tokens") or []
        conn.respond(200, JSON_HEADERS, orjson.dumps({"prompt": " ".join(
            f"t{t}" for t in tokens)}))


def _prompt_ids(body: dict, chat: bool) -> list[int]:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "messages must be a non-empty list", "BadRequestError",
                             "messages")
        return encode_chat(messages)
    prompt = body.get("prompt", body.get("input", ""))
    if isinstance(prompt, list):  # token ids, or a batch of prompts (simulated as one)
        if all(isinstance(t, int) for t in prompt):
            return list(prompt) or [0]
        return [t for p in prompt for t in (p if isinstance(p, list) else encode(str(p)))] \
            or [0]
    return encode(str(prompt)) or [0]


def _seed(body: dict) -> int:
    """Output depends on the model and the prompt only (as greedy decoding would)."""
    prompt = [body["model"], body.get("messages"), body.get("prompt"), body.get("input")]
    digest = hashlib.blake2b(orjson.dumps(prompt, default=str), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _embed(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=dims).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest]
