"""The quarantine's parts, wired for one gateway: the mirror and its store, the sync that keeps
them in step, the probation that lets held requests back in; and what joins them to the
incident detector (strikes) and the forwarder (a probe's outcome)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from warden.config.schema import QuarantineSpec, Settings
from warden.forensics.incidents import death_signal
from warden.guard.probation import FAILED, INCONCLUSIVE, SURVIVED, Probation, ProbeTicket
from warden.guard.quarantine import Policy, Quarantine, QuarantineStore
from warden.guard.quarantine_store import FileStore, RedisStore
from warden.guard.quarantine_sync import QuarantineSync
from warden.proxy.relay import Relay
from warden.stream.observer import Verdict

log = logging.getLogger("warden.quarantine")

STOP_DEADLINE = 5.0   # seconds a stopping gateway gives the store to take what is pending


class QuarantineParts:
    def __init__(self, settings: Settings, is_down: Callable[[str], bool]):
        spec = settings.guard.quarantine
        store: QuarantineStore = RedisStore(spec.redis_url, spec.key_prefix, spec.timeout) \
            if spec.store == "redis" else FileStore(settings.quarantine_file)
        self.quarantine = Quarantine(store, spec.max_implicated, _policy(spec))
        self.sync = QuarantineSync(self.quarantine, store=spec.store,
                                   shared=spec.store == "redis", refresh=spec.refresh,
                                   timeout=spec.timeout, fail=spec.fail_mode)
        self.probation = Probation(self.quarantine, self.sync, is_down, spec.probe_wait,
                                   spec.max_waiting)
        self._task: asyncio.Task[None] | None = None

    def use(self, spec: QuarantineSpec) -> None:
        """A reloaded config: the durations, the waits and the fail mode apply now."""
        self.quarantine.policy = _policy(spec)
        self.probation.wait = spec.probe_wait
        self.probation.max_waiting = spec.max_waiting
        self.sync.fail = spec.fail_mode
        self.quarantine.refusing = self.sync.refusing

    async def start(self) -> None:
        self.probation.bind(asyncio.get_running_loop())
        await self.sync.start()
        self._task = asyncio.create_task(self.sync.run())

    async def stop(self) -> None:
        """Stop the sync loop; give the store `STOP_DEADLINE` to take what is pending (what
        it does not is logged), then close it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.sync.pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_DEADLINE):
                    await self.sync.sync_once()
        if self.sync.pending:
            log.error("quarantine: stopping with %d changes the %s store never got",
                      len(self.sync.pending), self.sync.store_name)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_DEADLINE):
                await self.quarantine.store.close()

    def implicate(self, incident: dict) -> None:
        """An incident opened (or learnt that its engine said it died): strike its
        implicated suspects, in the mirror at once (a client's retry comes within a
        second), in the store next."""
        changes = self.quarantine.strikes_of(incident)
        entries = [self.sync.submit(fingerprint, change) for fingerprint, change in changes]
        if entries:
            log.warning("quarantine: incident %s struck %d fingerprints (%d blocked; %s)",
                        incident["id"], len(entries),
                        sum(e is not None and e.blocked for e in entries),
                        "the engine said it died" if incident.get("engine_crash")
                        else "its connections vanished")

    def probe_ended(self, exchange: Relay) -> None:
        ticket = exchange.quarantine_probe
        assert isinstance(ticket, ProbeTicket)
        how = death_signal(exchange)
        if how is not None:
            outcome = FAILED
        elif exchange.verdict == Verdict.COMPLETE and exchange.sent_at \
                and 200 <= exchange.status < 500:
            outcome, how = SURVIVED, f"answered {exchange.status}"
        else:
            outcome, how = INCONCLUSIVE, exchange.verdict or exchange.error or "not sent"
        self.probation.ended(ticket, outcome, how)


def _policy(spec: QuarantineSpec) -> Policy:
    return Policy(hold_for=spec.hold_for, block_for=spec.block_for)
