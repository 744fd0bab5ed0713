"""Notice that a config file changed, by polling its identity.

Polling `stat` once a second costs nothing and needs no platform API (inotify misses the
symlink swap with which Kubernetes updates a mounted ConfigMap). The identity is (inode,
size, modification time): an editor that saves in place changes the time, one that writes a
new file and renames it changes the inode, and a ConfigMap update changes what the path
resolves to. Whether the text really changed is the reloader's business (it compares the
content), so a `touch` costs one read.

A change is acted on once the file has settled: its new identity seen on two polls in a row.
An editor or a script that truncates the file and then writes it (`echo ... > warden.yaml`)
would otherwise be caught half-way and its empty or partial text refused as a bad config,
logged and counted as a failed reload. The price is one interval more before a reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from warden.config.schema import ReloadSpec

log = logging.getLogger("warden.config")

Identity = tuple[int, int, int] | None


def identity(path: Path) -> Identity:
    try:
        st = os.stat(path)
    except OSError:
        return None  # gone for now (a rename under way, a ConfigMap swap): wait for it
    return st.st_ino, st.st_size, st.st_mtime_ns


class ConfigFileWatcher:
    def __init__(self, path: Path, spec: Callable[[], ReloadSpec],
                 on_change: Callable[[], Awaitable[object]]):
        """`spec()` is read each round: a reload may turn watching on or off, or change
        its pace."""
        self._path = path
        self._spec = spec
        self._on_change = on_change
        self._seen = identity(path)
        self._settling: Identity = None  # a new identity seen once, not yet twice

    async def run(self) -> None:
        while True:
            spec = self._spec()
            await asyncio.sleep(spec.interval)
            if not self.settled_change():
                continue
            if not self._spec().watch:
                continue  # (a change made while not watching is not applied later either)
            try:
                await self._on_change()
            except Exception:  # a reload never takes the watcher (or the gateway) down
                log.exception("config reload after %s changed failed", self._path)

    def settled_change(self) -> bool:
        """One poll: whether the file changed and has stopped changing (the same new
        identity as at the previous poll)."""
        now = identity(self._path)
        if now is None or now == self._seen:
            self._settling = None
            return False
        if now != self._settling:
            self._settling = now  # changed, perhaps still being written: look again
            return False
        self._seen, self._settling = now, None
        return True
