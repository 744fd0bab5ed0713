"""The circuit breaker and passive ejection, on a fake clock."""

from __future__ import annotations

from warden.config.schema import BreakerSpec, PassiveHealthSpec
from warden.fleet.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, PassiveEjection


def breaker(**spec) -> CircuitBreaker:
    return CircuitBreaker(BreakerSpec(failures=3, open_for=30, probes=2, **spec))


def test_failures_in_a_row_open_it_a_success_in_between_does_not():
    b = breaker()
    b.failed(0, probe=False)
    b.failed(1, probe=False)
    b.succeeded(probe=False)
    b.failed(2, probe=False)
    b.failed(3, probe=False)
    assert b.state == CLOSED and b.allows(3)
    b.failed(4, probe=False)
    assert b.state == OPEN and b.trips == 1
    assert not b.allows(4) and not b.allows(33.9)


def test_half_open_allows_a_few_probes_at_once_and_closes_on_their_success():
    b = breaker()
    for t in range(3):
        b.failed(t, probe=False)
    assert b.allows(32.0) and b.state == HALF_OPEN   # open_for is over
    assert b.sent() and b.sent()                      # two probes in flight
    assert not b.allows(32.0)                         # a third must wait
    b.succeeded(probe=True)
    assert b.allows(32.0) and b.state == HALF_OPEN    # one slot free, not closed yet
    b.succeeded(probe=True)
    assert b.state == CLOSED and b.allows(32.0)
    assert not b.sent()                               # closed: no more probes


def test_a_failed_probe_opens_it_again():
    b = breaker()
    for t in range(3):
        b.failed(t, probe=False)
    assert b.allows(40.0)
    b.sent()
    b.failed(40.5, probe=True)
    assert b.state == OPEN and b.trips == 2
    assert not b.allows(70.0) and b.allows(70.5)      # a full open_for from the new failure


def test_an_abandoned_probe_frees_its_slot_without_a_verdict():
    b = breaker()
    for t in range(3):
        b.failed(t, probe=False)
    assert b.allows(32.0)
    probe = b.sent()
    b.sent()
    assert not b.allows(32.0)
    b.abandoned(probe)
    assert b.allows(32.0) and b.state == HALF_OPEN


def test_a_late_failure_of_a_request_sent_before_it_opened_changes_nothing():
    b = breaker()
    for t in range(3):
        b.failed(t, probe=False)
    b.failed(10, probe=False)
    assert b.state == OPEN and b.opened_at == 2 and b.trips == 1


def test_passive_ejection_counts_failures_within_the_window():
    ejection = PassiveEjection(PassiveHealthSpec(max_fails=3, fail_timeout=10))
    assert not ejection.failed(0)
    assert not ejection.failed(5)
    assert not ejection.failed(11)      # the first one is out of the window now
    assert ejection.failed(12)          # 5, 11, 12: three within 10 s
    assert ejection.ejected(21.9) and not ejection.ejected(22.0)


def test_passive_ejection_can_be_off():
    ejection = PassiveEjection(PassiveHealthSpec(max_fails=0))
    assert not any(ejection.failed(t) for t in range(100))
