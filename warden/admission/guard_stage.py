"""The guard as an admission stage: what the guard decides (guard.Guard.judge), done.

Most requests: one call that finds nothing to do. Otherwise the outcome is followed: refused,
the body rewritten, the backends narrowed, a quarantine probe marked; or the request waits
(its remote images fetched, or parked while a quarantine probe runs) behind a future that
the chain awaits without a task (admission.stage)."""

from __future__ import annotations

import asyncio
from asyncio import Future

from warden.admission.parse import forward_changed
from warden.admission.stage import NativeStage, StageResult
from warden.errors import ClientGone, WardenError
from warden.fleet.backend import Backend
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard, Outcome
from warden.proxy.relay import Relay

Pending = Future[WardenError | None]


class GuardStage(NativeStage):
    def __init__(self, guard: Guard, backends: BackendRegistry):
        self._guard = guard
        self._backends = backends

    def admit(self, relay: Relay, body: dict) -> StageResult:
        serving = self._backends.serving.get(relay.model or "")
        if not serving:
            return None  # an unknown model is the forwarder's 404
        request = relay.request
        assert request is not None
        outcome = self._guard.judge(request.path, relay.model or "", body, request.body,
                                    serving)
        if outcome is None:  # (most requests)
            return None
        return self._follow(relay, body, serving, outcome, None)

    def _follow(self, relay: Relay, body: dict, serving: list[Backend], outcome: Outcome,
                pending: Pending | None) -> StageResult:
        """Do what the guard decided: None (go on), the refusal, or the future the request
        waits on (`pending` when it already waits on one)."""
        relay.guard_notes = [*(relay.guard_notes or ()), *outcome.notes]
        if outcome.rejection is not None:
            return outcome.rejection
        if outcome.changed:
            error = forward_changed(relay, body)
            if error is not None:
                return error
        if outcome.only is not None:
            relay.only = outcome.only if relay.only is None else relay.only & outcome.only
        relay.quarantine_probe = outcome.probe
        if not (outcome.fetch or outcome.wait):
            return None
        done: Pending = pending if pending is not None \
            else asyncio.get_running_loop().create_future()
        if outcome.fetch:
            self._fetch_media(relay, body, serving, done)
        else:
            self._wait_for_probe(relay, body, serving, done, None)
        return done

    def _fetch_media(self, relay: Relay, body: dict, serving: list[Backend],
                     done: Pending) -> None:
        """Fetch the request's remote images and inline them (guard/media_fetch); the media
        rules then judge them, and it goes on, or is refused (a failed fetch: 400)."""
        guard = self._guard
        assert guard.fetcher is not None

        def fetched(error: WardenError | None) -> None:
            if error is None and relay.client.closed:
                error = ClientGone("the client left while its images were fetched")
            if error is None:
                error = forward_changed(relay, body)
            if error is not None:
                done.set_result(error)
                return
            outcome = guard.after_fetch(relay.endpoint, relay.model or "", body, serving)
            result = None if outcome is None \
                else self._follow(relay, body, serving, outcome, done)
            if result is not done:
                done.set_result(result)  # type: ignore[arg-type]  # (None or an error)

        guard.fetcher.start(body, fetched)

    def _wait_for_probe(self, relay: Relay, body: dict, serving: list[Backend],
                        done: Pending, deadline: float | None) -> None:
        """Park a request whose quarantine entry is being probed (guard/probation); when the
        probe's outcome is known, its quarantine step runs again: it goes on, probes, waits
        again, or is refused."""
        guard = self._guard
        probation = guard.probation
        assert probation is not None
        only = relay.only  # what the rules allowed, before the quarantine's step

        def resume() -> None:
            if relay.client.closed:  # it left while it waited
                done.set_result(ClientGone("the client closed the connection while its "
                                           "request waited for a quarantine probe"))
                return
            outcome = Outcome()
            guard.quarantined(body, serving, outcome)
            relay.guard_notes = [*(relay.guard_notes or ()), *outcome.notes]
            if outcome.rejection is not None:
                done.set_result(outcome.rejection)
            elif outcome.wait:
                self._wait_for_probe(relay, body, serving, done, parked_until)
            else:
                relay.quarantine_probe = outcome.probe
                # (narrowed, never widened: a route rule's backends stay the limit)
                relay.only = only if outcome.only is None else \
                    outcome.only if only is None else only & outcome.only
                done.set_result(None)

        parked_until = probation.park(resume, done.set_result, deadline)
