"""Reloading a gateway's config: build a new `Runtime`, learn its new backends, swap it in
whole; what a reload cannot change waits for a restart and is said so."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from warden.fleet.backend import Backend
from warden.runtime import build_runtime, restart_only_changes
from warden.settings import ConfigError, Settings, read_config, settings_from_yaml

if TYPE_CHECKING:
    from warden.app.gateway import Gateway

log = logging.getLogger("warden")


class Reloader:
    def __init__(self, gateway: Gateway, settings: Settings, source: Path | None):
        """`source`: the config file (None: a gateway built without one)."""
        self._gateway = gateway
        self._started_with = settings  # what a reload cannot change is compared to this
        self._source = source
        # The text the running config was read from (a changed file with the same text
        # is not reloaded).
        self._source_text = _read_or_none(source) if source is not None else None
        self._reloading = asyncio.Lock()  # two SIGHUPs in a row reload one after the other

    async def reload_source(self, why: str, only_if_changed: bool = False) -> dict:
        """Re-read the config file and reload it (SIGHUP, `warden reload`, or the watcher saw
        it change: `only_if_changed` skips a file whose text is the running one's). A config
        that does not load keeps the running one, and the log says why. Returns what it did
        (as `POST /admin/reload` answers): `result` ok, failed (with the `problems`) or
        unchanged, and the settings `restart_needed`."""
        assert self._source is not None, "a gateway built without a config file"
        done: dict = {"config": str(self._source)}
        # (Held from the read to the swap: two reloads at once (a SIGHUP and the watcher)
        # apply in the order they read, so the newest text is the one left running.)
        async with self._reloading:
            try:
                # Read and validated in a thread: a big config took milliseconds of the event
                # loop (the thread holds the GIL in slices of sys.getswitchinterval(): run.py).
                text = await asyncio.to_thread(read_config, self._source)
                if only_if_changed and text == self._source_text:
                    return {**done, "result": "unchanged"}  # touched, not changed
                settings = await asyncio.to_thread(settings_from_yaml, text, self._source)
            except ConfigError as e:
                return self._failed(done, why, "is invalid", e.problems)
            try:
                waiting = await self._reload(settings, why)
            except Exception as e:  # (not the config's fault: say so, keep serving)
                return self._failed(done, why, "could not be applied",
                                    [f"{e.__class__.__name__}: {e}"])
            self._source_text = text
        gateway = self._gateway
        return {**done, "result": "ok", "restart_needed": waiting,
                "backends": len(gateway.backends), "policy": gateway.policy.name}

    def _failed(self, done: dict, why: str, what: str, problems: list[str]) -> dict:
        self._gateway.metrics.reloads["failed"] += 1
        log.error("config reload (%s): %s %s; the running config stays:\n  %s",
                  why, self._source, what, "\n  ".join(problems))
        return {**done, "result": "failed", "problems": problems}

    async def reload(self, settings: Settings, why: str = "asked") -> list[str]:
        """Build a runtime for `settings` and swap it in; requests in flight carry on.
        Returns the settings that changed but wait for a restart (also logged)."""
        async with self._reloading:
            return await self._reload(settings, why)

    async def _reload(self, settings: Settings, why: str) -> list[str]:
        """`reload`, its caller holding `_reloading`."""
        gateway = self._gateway
        parts = gateway.parts
        if gateway.stopping:
            return []
        old = gateway.runtime
        quarantine = parts.quarantine
        started = time.perf_counter()
        runtime = build_runtime(settings,
                                quarantine.probation if quarantine is not None else None,
                                old, parts.incidents.recent_of, parts.keys.ring,
                                parts.limiter)
        parts.probe.note("reload", started)
        added = runtime.backends.added_since(old.backends)
        removed = runtime.backends.removed_since(old.backends)
        # New engines are asked what they serve before they are routed to (as at start).
        # Meanwhile requests still see the old runtime (kept backends already carry
        # their new settings: harmless, each is a plain value).
        await asyncio.gather(*(parts.discovery.refresh(b) for b in added))
        if gateway.stopping:
            return []
        runtime.backends.reindex()
        waiting = restart_only_changes(self._started_with, settings)
        started = time.perf_counter()
        gateway.activate(runtime)
        parts.probe.note("reload", started)
        for backend in removed:  # its requests in flight finish; then its connections close
            backend.pool.retire()
        parts.metrics.reloads["ok"] += 1
        log.info("config reloaded (%s): %d backends (%s), policy %s", why,
                 len(runtime.backends), _changes(added, removed), runtime.policy.name)
        if waiting:
            log.warning("config reload: %s changed; that takes effect at the next restart",
                        ", ".join(waiting))
        return waiting


def _read_or_none(path: Path) -> str | None:
    try:
        return read_config(path)
    except ConfigError:
        return None


def _changes(added: list[Backend], removed: list[Backend]) -> str:
    parts = [f"+{b.name}" for b in added] + [f"-{b.name}" for b in removed]
    return " ".join(parts) if parts else "same set"
