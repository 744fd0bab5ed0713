"""One simulated vLLM OpenAI server: its HTTP endpoints over a `SimEngine`."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable

import orjson

from warden.edge.request import HttpRequest
from warden.edge.server import HttpConnection, HttpServer, ServerLimits
from warden.edge.wire import header_block
from warden.fleet.versions import parse_version
from warden.sim import routes
from warden.sim import vllm_format as fmt
from warden.sim.config import NodeConfig
from warden.sim.crashes import first_match
from warden.sim.engine import Sequence, SimEngine
from warden.sim.generation import (
    ENGINE_DEAD,
    JSON_HEADERS,
    SERVER,
    Generation,
    GenerationWatcher,
)
from warden.sim.metrics import NodeMetrics
from warden.sim.requests import (
    BadRequest,
    check_sampling,
    check_structured_outputs,
    checked_max_tokens,
    prompt_ids_of,
    seed_of,
)
from warden.upstream.batch import WriteBatch

log = logging.getLogger("warden.sim")

PLAIN_HEADERS = header_block(SERVER)
TEXT_HEADERS = header_block((b"content-type", b"text/plain; version=1.0.0; charset=utf-8"),
                            SERVER)

_MAX_REMEMBERED_IDS = 100_000
_GENERATING = frozenset(("/v1/chat/completions", "/v1/completions", "/v1/responses"))


class SimNode:
    def __init__(self, index: int, host: str, port: int, config: NodeConfig, control):
        self.index = index
        self.host = host
        self.port = port
        self.config = config
        self._control = control
        # Its servers' write batch (one across restarts), and what a control request asked
        # to happen once its answer has left (a node killing itself).
        self._writes = WriteBatch()
        self._after_answer: list[Callable[[], None]] = []
        self.alive = False
        self.request_ids: deque[str] = deque(maxlen=_MAX_REMEMBERED_IDS)
        self.traceparents: deque[str] = deque(maxlen=_MAX_REMEMBERED_IDS)  # (W3C, as sent)
        self._server: HttpServer | None = None
        self._created = int(time.time())
        self._active: set[Generation] = set()
        self._refusing: list[HttpServer] = []  # listeners closed by a `refuse` fault
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._boot()

    def _boot(self) -> None:
        """A fresh engine and fresh metrics: what a (re)started vLLM has."""
        self.engine_dead = False
        self.errors_left = 0  # the next this-many generation requests get a 500
        self.metrics_down = False  # /metrics answers 503
        self.health_delay = 0.0  # seconds /health takes to answer (a busy API server)
        config = self.config
        self.metrics = NodeMetrics(config.models[0], config.vllm_version,
                                   legacy_names=config.legacy_metric_names,
                                   cache_config=config.cache_config(), loras=config.loras,
                                   speculative=config.speculative_decoding)
        self.engine = SimEngine(self.config.engine, asyncio.get_event_loop(), self.metrics)
        self.metrics.watch(self.engine)

    async def start(self) -> None:
        self._server = HttpServer(self, ServerLimits(keepalive_timeout=5.0),
                                  writes=self._writes)
        await self._server.start(self.host, self.port)
        self.alive = True

    def after_answer(self, action: Callable[[], None]) -> None:
        """Run `action` once the answer to the control request being served has left."""
        self._after_answer.append(action)

    async def kill(self) -> None:
        """Die like a crashed server: stop listening, reset every connection."""
        self.alive = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.engine.stop()
        for server in [self._server, *self._refusing]:
            if server is not None:
                await server.close()
        self._server = None
        self._refusing.clear()

    async def revive(self) -> None:
        if self.alive:
            return
        self._boot()
        await self.start()

    def crash(self, cause: str) -> None:
        """The engine dies as vLLM's does: every request in flight fails (streams get an
        error event then [DONE]); new requests get 500; /health turns 503 (before 0.24) or
        connections are refused (from 0.24); the API server exits `exit_after` later, and a
        supervisor restarts it `restart_after` after that."""
        if self.engine_dead or not self.alive:
            return
        log.warning("sim node %d: engine died (%s)", self.index, cause)
        self.engine_dead = True
        for generation in list(self._active):
            generation.fail()
        self.engine.stop()
        if parse_version(self.config.vllm_version) >= (0, 24, 0) and self._server is not None:
            self._server.stop_listening()
        self._later(self.config.exit_after, self._exit)

    async def _exit(self) -> None:
        await self.kill()
        if self.config.restart_after is not None:
            self._later(self.config.restart_after, self.revive)

    async def fault(self, mode: str, value: float) -> None:
        """Switch on a failure: hang | slow (value = factor) | errors (value = count) |
        refuse | crash | metrics_down (/metrics answers 503) | health_slow (/health answers
        after `value` seconds, 5 by default: an API server too busy to answer in time); or
        `recover` from hang, slow, errors, refuse, metrics_down and health_slow."""
        if mode == "hang":
            self.engine.hang()
        elif mode == "slow":
            self.engine.slowdown = value or 1.0
        elif mode == "errors":
            self.errors_left = int(value)
        elif mode == "refuse":
            if self._server is not None:
                self._server.stop_listening()  # connections already open carry on
                self._refusing.append(self._server)
                self._server = None
        elif mode == "crash":
            self.crash("fault injected")
        elif mode == "metrics_down":
            self.metrics_down = True
        elif mode == "health_slow":
            self.health_delay = value or 5.0
        elif mode == "recover":
            self.engine.slowdown = 1.0
            self.errors_left = 0
            self.metrics_down = False
            self.health_delay = 0.0
            self.engine.resume()
            if self._server is None and self.alive:
                await self.start()
        else:
            raise ValueError(f"unknown fault {mode!r}")

    def _later(self, delay: float, coroutine_function) -> None:
        def run() -> None:
            task = asyncio.get_running_loop().create_task(coroutine_function())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._timers.append(asyncio.get_running_loop().call_later(delay, run))

    # -- HTTP ------------------------------------------------------------------------------

    async def __call__(self, request: HttpRequest, conn: HttpConnection) -> None:
        path = request.path
        try:
            if path.startswith("/sim/"):
                status, body = await self._control(request, self)
                conn.respond(status, JSON_HEADERS, body)
                if self._after_answer:  # the answer leaves now (not at the turn's end) first
                    self._writes.flush()
                    actions, self._after_answer = self._after_answer, []
                    for action in actions:
                        action()
            elif not self._authorized(request):
                conn.respond(401, JSON_HEADERS, b'{"error":"Unauthorized"}')
            elif request.method == "GET":
                if path == "/health" and self.health_delay:
                    await asyncio.sleep(self.health_delay)  # the simulated slowness
                self._get(path, conn)
            elif request.method == "POST":
                await self._post(path, request, conn)
            else:
                raise BadRequest(405, "Method Not Allowed", "MethodNotAllowed")
        except BadRequest as e:
            conn.respond(e.status, JSON_HEADERS, e.body)

    def _authorized(self, request: HttpRequest) -> bool:
        """As vLLM with --api-key: every /v1 route wants `Authorization: Bearer <key>`."""
        key = self.config.api_key
        if key is None or not request.path.startswith("/v1"):
            return True
        return request.header(b"authorization") == b"Bearer " + key.encode()

    def _get(self, path: str, conn: HttpConnection) -> None:
        if path == "/health":
            conn.respond(503 if self.engine_dead else 200, PLAIN_HEADERS, b"")
        elif path == "/version" and self.config.answers_version:
            conn.respond(200, JSON_HEADERS, orjson.dumps({"version": self.config.vllm_version}))
        elif path == "/v1/models":
            config = self.config
            cards = [fmt.model_card(m, self._created, config.max_model_len)
                     for m in config.models]
            cards += [fmt.model_card(lora, self._created, config.max_model_len,
                                     parent=config.models[0]) for lora in config.loras]
            conn.respond(200, JSON_HEADERS, orjson.dumps({"object": "list", "data": cards}))
        elif path == "/tokenizer_info" and routes.serves_tokenizer_info(self.config):
            conn.respond(200, JSON_HEADERS, routes.tokenizer_info(self.config))
        elif path == "/metrics":
            if self.metrics_down:
                conn.respond(503, PLAIN_HEADERS, b"")
            else:
                conn.respond(200, TEXT_HEADERS, self.metrics.render())
        else:
            conn.respond(404, JSON_HEADERS, b'{"detail":"Not Found"}')

    async def _post(self, path: str, request: HttpRequest, conn: HttpConnection) -> None:
        if path not in _GENERATING and path not in routes.ANSWERED_AT_ONCE:
            raise BadRequest(404, "Not Found", "NotFound")
        body = self._parse(request)
        if path in _GENERATING:
            await self._generate(path, request, body, conn)
        else:
            routes.answer(path, body, self.config, conn)

    def _parse(self, request: HttpRequest) -> dict:
        rid = request.header(b"x-request-id")
        if rid:  # (a gateway gives one to every request it forwards; not to its own probes)
            self.request_ids.append(rid.decode())
        if (parent := request.header(b"traceparent")) is not None:
            self.traceparents.append(parent.decode())
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
        if self.engine_dead:
            conn.respond(500, JSON_HEADERS, ENGINE_DEAD)
            return
        trigger = first_match(body, self.config.triggers)
        if trigger is not None:
            self.crash(f"{trigger.name}: {trigger.description}")
            conn.respond(500, JSON_HEADERS, ENGINE_DEAD)
            return
        if self.errors_left > 0:
            self.errors_left -= 1
            conn.respond(500, JSON_HEADERS, fmt.error("Internal server error (injected)",
                                                      "InternalServerError", 500))
            return
        chat = path == "/v1/chat/completions"
        prompt_ids = prompt_ids_of(body, chat, self.config.tokenizer)
        limit = self.config.max_model_len
        max_tokens = checked_max_tokens(body, len(prompt_ids), limit)
        check_sampling(body)
        check_structured_outputs(body)
        rid_header = request.header(b"x-request-id")
        base_id = rid_header.decode() if rid_header else os.urandom(8).hex()
        kind = "chat" if chat else ("responses" if path == "/v1/responses" else "completion")
        gen = Generation(kind, base_id, body, len(prompt_ids), self.config.vllm_version, conn)
        lora = body["model"] if body["model"] in self.config.loras else None
        max_tokens = min(max_tokens, limit - len(prompt_ids))
        # vLLM's `ignore_eos`: the output runs to max_tokens instead of its natural length.
        natural = max_tokens if body.get("ignore_eos") is True \
            else self.config.engine.output_tokens
        seq = Sequence(prompt_ids, max_tokens, natural, seed_of(body), gen.on_token, lora)
        conn.watcher = GenerationWatcher(self.engine, seq, gen)
        self._active.add(gen)
        try:
            self.engine.submit(seq)
            await gen.done
        finally:
            self._active.discard(gen)
