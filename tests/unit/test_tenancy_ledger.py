"""The limits' arithmetic, pure (warden/tenancy/ledger.py): leases and credit, slots held in
blocks, with fake clocks; and the overshoot bound, by simulating replicas that share one
counter with the LEASE script's rule, their leases answered in random orders."""

from __future__ import annotations

import random

import pytest

from warden.tenancy.ledger import (
    BURST,
    COVERED,
    CREDIT,
    DOWN,
    RECHECK,
    SPENT,
    TOO_LARGE,
    Bucket,
    Slots,
    block_of,
    window_end,
    window_of,
)


def test_windows_are_the_wall_clocks_minutes():
    assert window_of(120.0) == window_of(179.999) == 2 and window_of(180.0) == 3
    assert window_end(2) == 180.0
    assert block_of(1000, 0.05) == 50 and block_of(10, 0.05) == 1


def test_a_bucket_admits_what_it_holds_then_on_credit_at_most_one_lease():
    bucket = Bucket(limit=100, lease=10)
    assert bucket.ask() == 10                       # nothing held: a lease
    assert bucket.decide(1, True) == CREDIT         # admitted before it arrives ...
    for _ in range(10):
        assert bucket.decide(1, True) == CREDIT
        bucket.take(1)
    assert bucket.have == -10
    assert bucket.decide(1, True) == BURST          # ... but never more than a lease owed
    assert bucket.ask() == 20                       # a lease, plus what it owes
    bucket.asking = 20
    assert bucket.ask() == 0                        # one lease in flight at a time
    bucket.granted(20, 20, shared=20)
    assert (bucket.have, bucket.exhausted, bucket.remaining()) == (10, False, 90)
    assert bucket.decide(1, True) == COVERED


def test_a_reservation_larger_than_a_lease_goes_on_credit_only_from_nothing_owed():
    bucket = Bucket(limit=10_000, lease=500)
    assert bucket.decide(2000, True) == CREDIT      # owes 2000 = max(lease, its cost)
    bucket.take(2000)
    assert bucket.decide(1, True) == BURST
    assert bucket.decide(10_001, True) == TOO_LARGE  # never fits, whatever is held


def test_a_spent_window_admits_only_what_is_held_and_asks_no_more():
    bucket = Bucket(limit=30, lease=10)
    bucket.asking = 10
    bucket.granted(10, 4, shared=30)                # others took the rest
    assert bucket.exhausted and bucket.remaining() == 4
    for _ in range(4):
        assert bucket.decide(1, True) == COVERED
        bucket.take(1)
    assert bucket.decide(1, True) == SPENT          # no credit once the store said so
    assert bucket.decide(1, False) == SPENT         # the store being down changes nothing
    assert bucket.ask() == 0
    bucket.give(3)                                  # a reservation's unused part
    assert bucket.decide(3, True) == COVERED


def test_with_the_store_down_only_what_is_held_is_admitted():
    bucket = Bucket(limit=100, lease=10)
    bucket.asking = 10
    bucket.granted(10, 10, shared=10)
    assert bucket.decide(10, False) == COVERED
    assert bucket.decide(11, False) == DOWN         # the fail mode decides
    bucket.asking = 5
    bucket.failed()
    assert bucket.asking == 0


def test_the_memory_bucket_holds_the_whole_limit_and_is_never_over():
    bucket = Bucket(limit=3, lease=1, whole=True)
    for _ in range(3):
        assert bucket.decide(1, True) == COVERED
        bucket.take(1)
    assert bucket.decide(1, True) == SPENT and bucket.ask() == 0
    assert bucket.remaining() == 0
    bucket.relimit(5, 1, whole=True)                # a reload raises it: 2 more
    assert bucket.remaining() == 2 and bucket.decide(1, True) == COVERED


class Replica:
    """One replica's bucket, driven as the limiter drives it."""

    def __init__(self, limit: int, lease: int):
        self.bucket = Bucket(limit, lease)
        self.admitted = 0
        self.largest_on_credit = 0

    def request(self, cost: int) -> None:
        outcome = self.bucket.decide(cost, True)
        if outcome in (COVERED, CREDIT):
            self.bucket.take(cost)
            self.admitted += cost
            if outcome == CREDIT:
                self.largest_on_credit = max(self.largest_on_credit, cost)
        if not self.bucket.asking:
            self.bucket.asking = self.bucket.ask()


def simulate(seed: int, replicas: int, limit: int, lease: int, costs: list[int]) -> tuple:
    rng = random.Random(seed)
    group = [Replica(limit, lease) for _ in range(replicas)]
    taken = 0
    for _ in range(20_000):
        replica = rng.choice(group)
        bucket = replica.bucket
        if bucket.asking and rng.random() < 0.3:    # its lease is answered (LEASE's rule)
            got = max(0, min(bucket.asking, limit - taken))
            taken += got
            bucket.granted(bucket.asking, got, taken)
        else:
            replica.request(rng.choice(costs))
    return group, taken


@pytest.mark.parametrize("seed", range(20))
def test_replicas_sharing_a_counter_pass_the_limit_by_at_most_one_debt_each(seed):
    limit, lease = 1000, 50
    group, taken = simulate(seed, 3, limit, lease, [1])
    admitted = sum(replica.admitted for replica in group)
    assert taken <= limit
    assert limit <= admitted <= limit + 3 * lease
    group, taken = simulate(seed, 3, 100_000, 5000, [10, 800, 7000])   # tokens
    bound = sum(max(5000, replica.largest_on_credit) for replica in group)
    assert taken <= 100_000 < sum(replica.admitted for replica in group) + 3 * 5000
    assert sum(replica.admitted for replica in group) <= 100_000 + bound


def test_the_bound_is_reached_when_every_replica_borrows_as_the_counter_runs_out():
    """Each replica owes a whole lease when the store answers that nothing is left."""
    limit, lease = 100, 10
    group = [Replica(limit, lease) for _ in range(3)]
    for replica in group:
        for _ in range(lease + 5):
            replica.request(1)
        assert replica.admitted == lease              # the rest: BURST
    for replica in group:                             # the counter was spent meanwhile
        replica.bucket.granted(replica.bucket.asking, 0, limit)
    assert sum(replica.admitted for replica in group) == 3 * lease   # on top of the limit
    assert all(replica.bucket.decide(1, True) == SPENT for replica in group)


def test_slots_are_taken_from_what_is_held_then_one_block_on_credit():
    slots = Slots(limit=10, block=2, ttl=30.0)
    assert slots.wants(0.0) == -1                     # idle: nothing to hold
    assert slots.decide(0.0, True) == CREDIT
    slots.take(0.0)
    assert slots.wants(0.0) == 3                      # in use plus a block
    slots.take(0.0)
    assert slots.decide(0.0, True) == BURST           # a block on credit, no more
    slots.asking = True
    slots.granted(3, 3, asked_at=0.0)
    assert slots.decide(1.0, True) == COVERED
    assert slots.decide(1.0, False) == COVERED        # held: the store is not needed


def test_held_slots_lapse_at_their_ttl_by_the_replicas_clock_and_are_renewed_before():
    slots = Slots(limit=10, block=2, ttl=30.0)
    slots.take(0.0)
    slots.granted(3, 3, asked_at=0.0)
    assert slots.wants(9.9) == -1 and slots.wants(10.0) == 3     # renewed at a third
    slots.take(29.0)
    assert slots.decide(29.0, False) == COVERED
    assert slots.decide(30.0, False) == DOWN           # lapsed: the fail mode decides
    assert slots.decide(30.0, True) == BURST           # up: 2 in use is a block on credit
    slots.free()
    assert slots.decide(30.0, True) == CREDIT


def test_a_full_store_refuses_and_is_asked_again_at_most_every_recheck():
    slots = Slots(limit=4, block=1, ttl=30.0)
    slots.take(0.0)
    slots.granted(2, 1, asked_at=0.0)                 # others hold the other three
    assert slots.full and slots.decide(0.0, True) == SPENT
    assert slots.wants(0.5) == -1
    assert slots.wants(RECHECK) == 2
    assert slots.decide(RECHECK, True) == CREDIT      # stale: a credit asks again
    slots.granted(2, 2, asked_at=RECHECK)
    assert not slots.full and slots.decide(RECHECK, True) == COVERED


def test_an_idle_subject_gives_its_slots_back():
    slots = Slots(limit=10, block=2, ttl=30.0)
    for _ in range(6):
        slots.take(0.0)
    slots.granted(8, 8, asked_at=0.0)
    for _ in range(6):
        slots.free()
    assert slots.wants(1.0) == 2                      # a block too many: shrink to headroom
    slots.granted(2, 2, asked_at=1.0)
    assert slots.wants(31.0) == 0                     # idle for a TTL: give all back
    slots.granted(0, 0, asked_at=31.0)
    assert slots.wants(100.0) == -1 and slots.held == 0


def test_a_replica_holding_every_slot_takes_none_on_credit():
    slots = Slots(limit=2, block=1, ttl=30.0)
    slots.take(0.0)
    slots.take(0.0)
    slots.granted(2, 2, asked_at=0.0)
    assert slots.decide(0.0, True) == SPENT


def test_memory_slots_hold_the_limit_and_never_exceed_it():
    slots = Slots(limit=2, block=1, ttl=30.0, whole=True)
    slots.take(0.0)
    slots.take(0.0)
    assert slots.decide(1e9, True) == SPENT
    slots.free()
    assert slots.decide(1e9, True) == COVERED
