"""Probation: how requests in quarantine get back in. A held request (the engine said it
died) is probed only on the engine that died, once it is alive again; a watched one (its
connection vanished) on one engine that every replica agrees on; one probe per backend at a
time; the others wait for its outcome, which clears, blocks or passes the turn on."""

from __future__ import annotations

import asyncio

from tests.unit.test_quarantine import PLAIN, POISON, incident, suspect
from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.errors import WardenError
from warden.fleet.backend import Backend
from warden.guard.probation import FAILED, INCONCLUSIVE, SURVIVED, Probation
from warden.guard.quarantine import Quarantine
from warden.guard.quarantine_store import FileStore
from warden.guard.quarantine_sync import QuarantineSync


def backend(name: str, port: int, canary: bool = False) -> Backend:
    return Backend(BackendSpec(name=name, url=f"http://127.0.0.1:{port}", canary=canary),
                   TimeoutsSpec())


class Rig:
    """A quarantine with probation over backends n1..n3; `down` is what the incident
    detector holds dead."""

    def __init__(self, tmp_path, wait: float = 5.0, max_waiting: int = 8):
        self.quarantine = Quarantine(FileStore(tmp_path / "q.json"))
        self.sync = QuarantineSync(self.quarantine, store="memory", shared=False,
                                   refresh=1.0, timeout=2.0)
        self.down: set[str] = set()
        self.probation = Probation(self.quarantine, self.sync, self.down.__contains__,
                                   wait=wait, max_waiting=max_waiting)
        self.probation.bind(asyncio.get_running_loop())
        self.backends = [backend("n1", 18001), backend("n2", 18002), backend("n3", 18003)]
        self.refused: list[WardenError] = []
        self.resumed: list[str] = []

    def strike(self, body: dict, *, on: str, engine_crash: bool, unusual=None) -> None:
        found = incident(f"i-{on}-{len(self.quarantine.entries)}", on, 0.0,
                         suspect(body, in_flight=True, unusual=unusual),
                         engine_crash=engine_crash)
        for fingerprint, change in self.quarantine.strikes_of(found):
            self.sync.submit(fingerprint, change)

    def decide(self, body: dict, backends=None):
        entry = self.quarantine.match(body)
        assert entry is not None
        return self.probation.decide(entry, body, backends or self.backends)

    def park(self, name: str) -> None:
        self.probation.park(lambda: self.resumed.append(name), self.refused.append)


async def test_a_held_request_is_probed_only_on_the_engine_that_died_once_it_is_back(
        tmp_path):
    rig = Rig(tmp_path)
    rig.strike(PLAIN, on="n2", engine_crash=True)
    rig.down.add("n2")
    refused = rig.decide(PLAIN)
    assert refused.refusal is not None and refused.refusal.status == 403
    assert "--url http://127.0.0.1:8000" in refused.refusal.message  # lift it as printed

    rig.down.discard("n2")  # a health check passed: alive again
    probe = rig.decide(PLAIN)
    assert probe.probe is not None and probe.probe.backend == "n2"
    assert rig.decide(PLAIN).wait  # one probe at a time on n2: the next one waits
    rig.park("second")
    rig.probation.ended(probe.probe, SURVIVED, "answered 200")
    assert rig.quarantine.match(PLAIN) is None and rig.resumed == ["second"]
    assert rig.probation.probes[SURVIVED] == 1 and rig.probation.waiting == 0


async def test_a_canary_takes_the_probe_of_a_held_request(tmp_path):
    rig = Rig(tmp_path)
    rig.strike(PLAIN, on="n1", engine_crash=True)
    rig.down.add("n1")
    canary = backend("canary", 18009, canary=True)
    probe = rig.decide(PLAIN, [*rig.backends, canary])
    assert probe.probe is not None and probe.probe.backend == "canary"


async def test_a_probe_that_dies_blocks_its_request_and_both_fingerprints(tmp_path):
    rig = Rig(tmp_path)
    rig.strike(POISON, on="n1", engine_crash=True, unusual=["structured_outputs empty"])
    probe = rig.decide(POISON)
    assert probe.probe is not None and probe.probe.backend == "n1"
    rig.park("waiter")
    rig.probation.ended(probe.probe, FAILED, "engine-dead 500")
    assert rig.resumed == ["waiter"]  # it decides again, and is refused
    again = rig.decide(POISON)
    assert again.refusal is not None and "a probe of it died" in again.refusal.message
    assert all(e.blocked for e in rig.quarantine.entries.values())
    assert len(rig.quarantine.entries) == 2  # exact and params, both blocked


async def test_a_watched_request_is_probed_on_one_backend_that_every_replica_picks(tmp_path):
    rig, other = Rig(tmp_path / "a"), Rig(tmp_path / "b")
    for each in (rig, other):
        each.strike(PLAIN, on="n2", engine_crash=False)
        each.down.add("n2")  # killed from outside, still down
    first = rig.decide(PLAIN).probe
    assert first is not None and first.backend != "n2"
    assert other.decide(PLAIN).probe.backend == first.backend
    # the probe's client left: no verdict, the turn passes to the next request
    rig.park("next")
    rig.probation.ended(first, INCONCLUSIVE, "client_abort")
    assert rig.resumed == ["next"] and rig.quarantine.match(PLAIN) is not None
    assert rig.decide(PLAIN).probe is not None


async def test_one_probe_per_backend_whatever_the_fingerprint(tmp_path):
    rig = Rig(tmp_path)
    other = {**PLAIN, "max_tokens": 7}
    rig.strike(PLAIN, on="n1", engine_crash=True)
    rig.strike(other, on="n1", engine_crash=True)
    assert rig.decide(PLAIN).probe is not None
    assert rig.decide(other).wait  # n1 is probing already


async def test_a_wait_is_bounded_in_time_and_in_number(tmp_path):
    rig = Rig(tmp_path, wait=0.05, max_waiting=1)
    rig.strike(PLAIN, on="n1", engine_crash=True)
    assert rig.decide(PLAIN).probe is not None
    rig.park("one")
    rig.park("two")  # no room
    assert len(rig.refused) == 1 and rig.refused[0].status == 503
    assert b"retry-after" in rig.refused[0].headers
    for _ in range(100):
        if len(rig.refused) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(rig.refused) == 2 and rig.refused[1].code == "quarantine_probe_pending"
    assert rig.probation.waits["full"] == 1 and rig.probation.waits["timed_out"] == 1
    assert rig.resumed == [] and rig.probation.waiting == 0


async def test_a_request_parked_again_keeps_its_first_deadline(tmp_path):
    rig = Rig(tmp_path, wait=5.0)
    rig.strike(PLAIN, on="n1", engine_crash=True)
    probe = rig.decide(PLAIN).probe
    first = rig.probation.park(lambda: None, rig.refused.append)
    rig.probation.ended(probe, INCONCLUSIVE, "client_abort")  # the turn passes: it resumes
    again = rig.probation.park(lambda: None, rig.refused.append, first)
    assert again == first  # not five more seconds
    assert rig.probation.park(lambda: None, rig.refused.append) > first


async def test_an_innocent_request_of_the_killers_shape_surviving_clears_only_its_own(
        tmp_path):
    """The killer's two fingerprints (its content, its shape) are struck. Another request
    of the same shape but other content is probed and survives: that clears the shape, not
    the killer's content, which still matches the killer."""
    rig = Rig(tmp_path)
    rig.strike(POISON, on="n1", engine_crash=True, unusual=["structured_outputs empty"])
    innocent = {**POISON, "messages": [{"role": "user", "content": "something else"}]}
    probe = rig.decide(innocent)
    assert probe.probe is not None and len(probe.probe.clears) == 1   # (the shape's only)
    rig.probation.ended(probe.probe, SURVIVED, "answered 200")
    assert rig.quarantine.match(innocent) is None
    assert rig.quarantine.match(POISON) is not None
