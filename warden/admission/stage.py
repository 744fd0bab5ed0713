"""The admission step's one extension point: a `Stage`.

A proxied request is parsed (admission.parse), then passes each stage of the chain in order
(admission.build: the per-address limits, the API key, the key's limits, the guard, then the
routing policy's affinity keys; each only where the config asks for it), then goes to the
forwarder. The chain is built from the config at each load.

Contract of `Stage.admit(relay, body)`, called once per request it reaches:
- return None: the request goes on (the common case: a stage must decide it in a few
  attribute reads, synchronously; this runs on the data path, with no task per request);
- return a `WardenError`: the request is refused with it (the chain answers in the OpenAI
  envelope and ends the exchange through the listeners, as every request ends);
- return a `Future` (for a stage that needs I/O: a store look-up, a fetch): the chain waits
  for it with a done-callback (still no task), then goes on if it resolves to None or refuses
  with the `WardenError` it resolves to. It must resolve, exactly once (a deadline is the
  stage's business), to a result, not an exception (one that fails or is cancelled anyway
  gets the client a 500, logged). A client that left while it waited is not forwarded: the
  chain refuses it (499) when the future resolves. Requests that no such stage touches never
  pay for it.
- A change is made in place: the `body` (then set `relay.forwarded_body`, the bytes sent
  instead of the client's), `relay.only` (narrowed, never widened: the backends it may go
  to), `relay.guard_notes`, the routing keys. A stage never answers the client itself.
"""

from __future__ import annotations

from asyncio import Future
from typing import Protocol

from warden.errors import WardenError
from warden.proxy.relay import Relay

StageResult = WardenError | Future[WardenError | None] | None


class Stage(Protocol):
    def admit(self, relay: Relay, body: dict) -> StageResult: ...


class NativeStage:
    """The base of the gateway's own stages (all compiled): the chain calls `admit` through
    it, a C call through the class's table, where one through the `Stage` protocol is a
    Python method call (~300 instructions a stage, a request). A stage that is not one (a
    test's) is wrapped in a `StageAdapter` when the chain is built (`native`)."""

    def admit(self, relay: Relay, body: dict) -> StageResult:
        raise NotImplementedError


class StageAdapter(NativeStage):
    """A stage that is not a `NativeStage`, behind its face."""

    def __init__(self, stage: Stage):
        self.stage = stage

    def admit(self, relay: Relay, body: dict) -> StageResult:
        return self.stage.admit(relay, body)


def native(stage: Stage) -> NativeStage:
    return stage if isinstance(stage, NativeStage) else StageAdapter(stage)
