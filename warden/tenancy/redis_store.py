"""The limits' shared counters in Redis: the scripts of tenancy/scripts.py, sent in batches
(one pipeline, so one round trip, per batch; each script is still atomic on its own).

Every batch is bounded by `asyncio.timeout`, never by the client's `socket_timeout` (see
guard/quarantine_store.py: redis-py's own `wait_for` can drop a cancellation on Python 3.11,
and a stopping gateway hung). A batch that times out may have run in part: a lease taken
but never heard of is lost to this replica (fewer admitted, never more); a hold is absolute
(the next one corrects it); an exact request's entry expires with its TTL.

Scripts are sent by their SHA1 (EVALSHA); a Redis that does not know them (its first use, or
a restart) answers NOSCRIPT, and only the calls that got that answer are sent again once the
scripts are loaded: a call that ran is never run twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from warden.tenancy.scripts import SCRIPTS

# One script call: its name in SCRIPTS, its keys, its arguments.
Call = tuple[str, list[str], list[int | str]]


class RedisLimits:
    def __init__(self, url: str, prefix: str, timeout: float):
        import redis.asyncio as redis  # only when configured
        from redis.exceptions import NoScriptError

        # socket_timeout=None: no wait_for inside the client; `timeout` bounds each batch.
        self._redis = redis.from_url(url, socket_timeout=None, socket_connect_timeout=timeout)
        self._no_script = NoScriptError
        self.prefix = prefix
        self.timeout = timeout
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest()
                     for name, text in SCRIPTS.items()}

    # -- keys (see tenancy/scripts.py): the kind first, the subject last ---------------------

    def window_key(self, subject: str, window: int) -> str:
        return f"{self.prefix}win:{window}:{subject}"

    def budget_key(self, subject: str, per: str, period: int) -> str:
        return f"{self.prefix}budget:{per}:{period}:{subject}"

    def hold_keys(self, subject: str) -> list[str]:
        return [f"{self.prefix}hold:{subject}", f"{self.prefix}hold-until:{subject}"]

    def busy_key(self, subject: str) -> str:
        return f"{self.prefix}busy:{subject}"

    def settled_key(self, replica: str) -> str:
        """The number of the replica's last settle applied (exact mode: EXACT_SETTLE)."""
        return f"{self.prefix}settled:{replica}"

    # -- calls ------------------------------------------------------------------------------

    async def run(self, calls: Sequence[Call]) -> list[list[int]]:
        """Each call's answer, in order; raises the first failure (a connection error, a
        timeout, a script's error)."""
        if not calls:
            return []
        async with asyncio.timeout(self.timeout):
            answers = await self._send(calls)
            unknown = [i for i, answer in enumerate(answers)
                       if isinstance(answer, self._no_script)]
            if unknown:
                await self._load()
                again = await self._send([calls[i] for i in unknown])
                for i, answer in zip(unknown, again, strict=True):
                    answers[i] = answer
        results: list[list[int]] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            values: list = answer if isinstance(answer, list) else [answer]
            results.append([int(value) for value in values])
        return results

    async def read_budgets(self, keys: list[str]) -> list[int]:
        """What each budget counter holds (0: none yet), in one round trip."""
        async with asyncio.timeout(self.timeout):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "t")
                values = await pipe.execute()
        return [int(value) if value is not None else 0 for value in values]

    async def ping(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _send(self, calls: Sequence[Call]) -> list[object]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                pipe.evalsha(self._sha[name], len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _load(self) -> None:
        for text in SCRIPTS.values():
            await self._redis.script_load(text)
