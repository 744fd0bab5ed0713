"""Where the quarantine lives: a JSON file beside the records (one replica), or Redis (shared
by every replica). Both survive a gateway restart.

Redis layout, under the configured prefix: `<prefix>quarantine` is a hash fingerprint -> the
entry as JSON; `<prefix>quarantine:version` is bumped on every change, so replicas poll one
small key and re-read the hash only when it moved. A change (a strike, a block, an expiry) is a
WATCH/MULTI transaction on the hash: two replicas striking the same fingerprint at once both
count, once each.

Every Redis call is bounded by `asyncio.timeout`, never by the client's `socket_timeout`:
redis-py (from 8.0, where it is on by default) enforces that with `asyncio.wait_for`, which on
Python 3.11 drops a cancellation that arrives as the write completes. A refresh loop cancelled
at shutdown then ran on, and the gateway's stop hung (reproduced: most cancels were lost).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

import orjson

from warden.guard.quarantine import Change, Entry
from warden.whole_file import write_whole


class FileStore:
    """Entries in memory, written through to one JSON file (whole: warden.whole_file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._entries: dict[str, Entry] | None = None
        self._version = 0

    def _read(self) -> dict[str, Entry]:
        if self._entries is None:
            try:
                data = orjson.loads(self.path.read_bytes())
            except FileNotFoundError:
                data = []
            self._entries = {item["fingerprint"]: Entry.of(item) for item in data}
        return self._entries

    def _write(self) -> None:
        entries = self._read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(self.path, orjson.dumps([e.as_dict() for e in entries.values()],
                                            option=orjson.OPT_INDENT_2))
        self._version += 1

    async def load(self) -> dict[str, Entry]:
        # Copies: the caller's mirror must not share objects with what `change` mutates.
        return {fp: Entry.of(asdict(e)) for fp, e in self._read().items()}

    async def change(self, fingerprint: str, fn: Change) -> Entry | None:
        entries = self._read()
        before = entries.get(fingerprint)
        entry = fn(before)
        if entry is None:
            entries.pop(fingerprint, None)
        else:
            entries[fingerprint] = entry
        if entry is not None or before is not None:
            self._write()
        return entry

    async def lift(self, fingerprints: list[str] | None) -> list[str]:
        entries = self._read()
        lifted = list(entries) if fingerprints is None else \
            [fp for fp in fingerprints if fp in entries]
        for fp in lifted:
            del entries[fp]
        if lifted:
            self._write()
        return lifted

    async def version(self) -> int:
        return self._version

    async def close(self) -> None:
        return None


class RedisStore:
    def __init__(self, url: str, prefix: str, timeout: float = 5.0):
        import redis.asyncio as redis  # only when configured

        # socket_timeout=None: no wait_for inside the client (see the module); `timeout`
        # bounds each of our operations instead.
        self._redis = redis.from_url(url, socket_timeout=None, socket_connect_timeout=timeout)
        self.timeout = timeout
        self._watch_error = redis.WatchError
        self.key = f"{prefix}quarantine"
        self.version_key = f"{prefix}quarantine:version"

    async def load(self) -> dict[str, Entry]:
        async with asyncio.timeout(self.timeout):
            raw = await self._redis.hgetall(self.key)
        return {fp.decode(): Entry.of(orjson.loads(data)) for fp, data in raw.items()}

    async def change(self, fingerprint: str, fn: Change) -> Entry | None:
        async with asyncio.timeout(self.timeout):
            return await self._change(fingerprint, fn)

    async def _change(self, fingerprint: str, fn: Change) -> Entry | None:
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self.key)
                    current = await pipe.hget(self.key, fingerprint)
                    entry = fn(Entry.of(orjson.loads(current)) if current else None)
                    if entry is None and current is None:
                        return None
                    pipe.multi()
                    if entry is None:
                        pipe.hdel(self.key, fingerprint)
                    else:
                        pipe.hset(self.key, fingerprint, orjson.dumps(entry.as_dict()))
                    pipe.incr(self.version_key)
                    await pipe.execute()
                    return entry
                except self._watch_error:
                    await asyncio.sleep(0)  # another replica wrote first: read again
                    continue

    async def lift(self, fingerprints: list[str] | None) -> list[str]:
        async with asyncio.timeout(self.timeout):
            return await self._lift(fingerprints)

    async def _lift(self, fingerprints: list[str] | None) -> list[str]:
        if fingerprints is None:
            fingerprints = [fp.decode() for fp in await self._redis.hkeys(self.key)]
        if not fingerprints:
            return []
        present = await self._redis.hmget(self.key, fingerprints)
        lifted = [fp for fp, data in zip(fingerprints, present, strict=True) if data]
        if lifted:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.key, *lifted)
                pipe.incr(self.version_key)
                await pipe.execute()
        return lifted

    async def version(self) -> int:
        async with asyncio.timeout(self.timeout):
            value = await self._redis.get(self.version_key)
        return int(value) if value else 0

    async def close(self) -> None:
        await self._redis.aclose()
