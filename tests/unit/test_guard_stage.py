"""The guard as an admission stage keeps the Stage contract's promise about `relay.only`: a
request parked behind a quarantine probe comes back with the backends it was narrowed to
before it waited (a route rule's), never fewer restrictions."""

from __future__ import annotations

import asyncio

from tests.unit.test_probation import Rig
from tests.unit.test_quarantine import PLAIN
from tests.unit.test_relay import REQUEST, Ends, FakeClient
from warden.admission.guard_stage import GuardStage
from warden.config.schema import GuardSpec, Settings, TimeoutsSpec
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard
from warden.guard.probation import SURVIVED
from warden.proxy.relay import Relay


async def test_a_request_back_from_waiting_keeps_the_backends_it_was_narrowed_to(tmp_path):
    rig = Rig(tmp_path)
    rig.strike(PLAIN, on="n2", engine_crash=True)  # held: probed on n2 once it is back
    first = rig.decide(PLAIN)
    assert first.probe is not None  # n2's one probe is out; the next request waits
    guard = Guard(GuardSpec(), rig.probation)
    settings = Settings.model_validate({"backends": [{"name": "x", "url": "http://h:1"}]})
    stage = GuardStage(guard, BackendRegistry(settings))
    relay = Relay(REQUEST, FakeClient(), b"r2", Ends(TimeoutsSpec()))
    relay.model = "m"
    relay.only = frozenset({"n1", "n3"})  # (what a route rule allowed it)
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    stage._wait_for_probe(relay, dict(PLAIN), rig.backends, done, None)
    rig.probation.ended(first.probe, SURVIVED, "answered 200")  # the entry is cleared
    assert await done is None  # it goes on...
    assert relay.only == frozenset({"n1", "n3"})  # ...still only where the rule let it
