"""Learns, per backend, the facts of the models it serves from its API server (how, and what
each vLLM version says: fleet/facts_probe), for the guard's rules (fleet/model_facts).

When: once when discovery first hears a backend answer, and again when its vLLM version or
its /v1/models cards change, or when it answers after a refused connection (restarted: maybe
with another model). Never per request, never on the data path: each round is a task of its
own, one request at a time over the backend's pool, each bounded by the discovery timeout and
the round by `ROUND_BUDGET`. A round cut short (a timeout, a refused connection) leaves what
it did not learn unknown, and is tried again `RETRY_AFTER` later at the earliest. Whatever
stays unknown is logged once per reason, not per poll. With the guard off nothing is learned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from warden.config.schema import Settings
from warden.errors import UpstreamError
from warden.fleet.backend import Backend
from warden.fleet.facts_probe import ModelProbe, probe_model, tokenizer_info_tokens
from warden.fleet.model_facts import Learned, LearnedModel, card_length
from warden.upstream.fetch import fetch

log = logging.getLogger("warden.facts")

ROUND_BUDGET = 60.0   # seconds, for all of one backend's models
RETRY_AFTER = 600.0   # seconds, after a round cut short
PROBED = ("vocab_size", "max_model_len", "special_tokens")


class FactLearner:
    def __init__(self, settings: Settings):
        self._tasks: dict[Backend, asyncio.Task[None]] = {}
        # backend -> (what its facts were learned for, when to try again if cut short)
        self._learned: dict[Backend, tuple[tuple, float]] = {}
        self._logged: dict[tuple[str, str, str], str] = {}  # (backend, model, fact) -> why
        self.use(settings, ())

    def use(self, settings: Settings, backends: Iterable[Backend]) -> None:
        """Learn as `settings` say, of these backends (at start; after a reload: the
        backends it removed are forgotten, and their learning stopped)."""
        self.enabled = settings.guard.mode != "off"
        self._timeout = min(settings.timeouts.connect, 5.0)
        kept = set(backends)
        for backend in [b for b in self._learned if b not in kept]:
            self._learned.pop(backend, None)
            task = self._tasks.pop(backend, None)
            if task is not None:
                task.cancel()

    def answered(self, backend: Backend) -> None:
        """Discovery heard it list its models: learn its facts if they may have changed."""
        if not self.enabled or backend in self._tasks:
            return
        signature = (backend.vllm_version, backend.card_shape, backend.models)
        learned = self._learned.get(backend)
        if learned is not None and learned[0] == signature and time.monotonic() < learned[1]:
            return
        self._learned[backend] = (signature, float("inf"))
        task = asyncio.get_running_loop().create_task(self._learn(backend, signature))
        self._tasks[backend] = task
        task.add_done_callback(lambda done: self._ended(backend, done))

    def _ended(self, backend: Backend, task: asyncio.Task[None]) -> None:
        if self._tasks.get(backend) is task:
            del self._tasks[backend]
        if not task.cancelled() and task.exception() is not None:  # (a bug: said, not lost)
            log.error("backend %s: learning its model facts failed", backend.name,
                      exc_info=task.exception())

    def refused(self, backend: Backend) -> None:
        """It refused a connection: when it answers again, learn anew."""
        self._learned.pop(backend, None)

    async def idle(self) -> None:
        """Wait until no backend's facts are being learned."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _learn(self, backend: Backend, signature: tuple) -> None:
        async def call(method: str, path: str, body: bytes) -> tuple[int, bytes]:
            return await fetch(backend.pool, method, path, backend.host_header, self._timeout,
                               body, backend.target.auth_line)

        adapters = {card.get("id") for card in backend.model_cards
                    if card.get("parent") is not None}
        models = sorted(m for m in backend.models if m not in adapters)
        learned: dict[str, LearnedModel] = {}
        if not models:
            backend.learned(learned)
            return
        try:
            async with asyncio.timeout(ROUND_BUDGET):
                info = await tokenizer_info_tokens(call)
                for model in models:
                    probe = await probe_model(call, model, card_length(backend, model), info)
                    learned[model] = _learned_model(probe)
        except (UpstreamError, TimeoutError) as e:
            reason = e.message if isinstance(e, UpstreamError) else \
                f"learning took over {ROUND_BUDGET:g}s"
            for model in models:
                if model not in learned:
                    lost = [f for f in PROBED
                            if f != "max_model_len" or card_length(backend, model) is None]
                    learned[model] = LearnedModel(problems=tuple((f, reason) for f in lost))
            self._learned[backend] = (signature, time.monotonic() + RETRY_AFTER)
        backend.learned(learned)
        self._report(backend, learned)

    def _report(self, backend: Backend, learned: dict[str, LearnedModel]) -> None:
        """Log what was learned, and each reason a fact stayed unknown once."""
        for model, facts in learned.items():
            known = [f"{name} {_text(fact)} ({fact.source})" for name in PROBED
                     if (fact := getattr(facts, name)) is not None]
            if known:
                log.info("backend %s, model %s: learned %s", backend.name, model,
                         ", ".join(known))
            unknown = {name for name, _ in facts.problems}
            for name in PROBED:
                if name not in unknown:
                    self._logged.pop((backend.name, model, name), None)
            for name, reason in facts.problems:
                if self._logged.get((backend.name, model, name)) != reason:
                    self._logged[backend.name, model, name] = reason
                    log.warning("backend %s, model %s: %s is unknown (%s); set "
                                "guard.models.%s.%s to give it", backend.name, model, name,
                                reason, model, name)


def _learned_model(probe: ModelProbe) -> LearnedModel:
    def fact(name: str) -> Learned | None:
        value = getattr(probe, name)
        return Learned(value, probe.source[name]) if value is not None else None

    return LearnedModel(vocab_size=fact("vocab_size"), max_model_len=fact("max_model_len"),
                        special_tokens=fact("special_tokens"),
                        problems=tuple(sorted(probe.problems.items())))


def _text(fact: Learned) -> str:
    value = fact.value
    return f"{len(value)} tokens" if isinstance(value, tuple) else str(value)
