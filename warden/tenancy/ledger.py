"""The arithmetic of limits as one replica keeps it, pure: time is an argument and there is
no I/O (the background loop, tenancy/refill.py, makes the Redis calls and hands the answers
in). Tested with a fake clock in tests/unit/test_tenancy_ledger.py.

Windows are fixed minutes of the wall clock (`window_of`), the same on every replica as long
as their clocks agree (NTP): a replica whose clock is s seconds off takes from a window s
seconds early or late.

A `Bucket` is one limit (rpm or tpm) of one subject in one window. `have` is what the replica
leased from the shared counter and has not spent; it admits from it with no Redis call. Below
half a lease it asks for more (`ask`: a lease, plus what it owes). While that is in flight it
may admit on credit, `have` going below zero, but never deeper than max(lease, the cost of
the request admitted on credit), nor than its share of the room the store said was left at
the last lease (`room`: what is left over the replicas leasing in the window; so the credit
shrinks as the window's budget runs out), and
never once the store said the window is spent (`exhausted`: it granted less than asked;
from then on only what is held is admitted). So what one replica admits in a window is at
most what the shared counter granted it plus one such debt: the overshoot bound (see
tenancy/leased.py).

A `Slots` is one subject's max_concurrent as one replica sees it: `held` slots granted by the
store (valid until `valid_until`, renewed every third of the TTL), `in_use` of them taken.
With none free it may take one on credit, at most `block` beyond what it holds (and never
past the limit on its own), while it asks for more; not while the store's last answer, less
than `RECHECK` ago, was that it is full.

Memory buckets and slots (one replica, no store) hold the whole limit from the start and are
`exhausted` / `full` from the start: nothing on credit, never over.
"""

from __future__ import annotations

import math
from typing import Final

WINDOW: Final = 60.0    # seconds: rpm and tpm are counted per minute of the wall clock
RECHECK: Final = 1.0    # seconds: a full subject's slots are asked for again at most this often

# What a bucket or slots say to one request (the order of the checks is the order here).
TOO_LARGE: Final = 1    # it costs more than the whole limit: it never fits
COVERED: Final = 0      # taken from what the replica holds
CREDIT: Final = 2       # taken on credit: a lease is (to be) asked for
SPENT: Final = 3        # the limit is reached (this window; for slots: the store is full)
BURST: Final = 4        # the credit is used up while a lease is in flight: retry shortly
DOWN: Final = 5         # the store is unreachable and what is held does not cover it

ADMITTED: Final = (COVERED, CREDIT)


def window_of(now: float) -> int:
    """(The wall clock is positive: truncating, then an integer division, is the floor.)"""
    return int(now) // 60


def window_end(window: int) -> float:
    return (window + 1) * WINDOW


def block_of(limit: int, fraction: float) -> int:
    """The lease size rule: a share of the limit, at least 1."""
    return max(1, int(limit * fraction))


class Bucket:
    """One limit (rpm or tpm) of one subject in one window, as one replica sees it."""

    __slots__ = ("asking", "exhausted", "have", "lease", "limit", "limit_text", "peers",
                 "shared")

    def __init__(self, limit: int, lease: int, *, whole: bool = False):
        """`whole`: the memory store's bucket, which holds all of the limit from the start."""
        self.limit = limit
        self.limit_text = b"%d" % limit   # (as the x-ratelimit headers write it)
        self.lease = lease
        self.have = limit if whole else 0     # leased and unspent (< 0: owed)
        self.shared = limit if whole else 0   # the shared counter after the last lease
        self.peers = 1                        # the replicas leasing in this window, then
        self.exhausted = whole                # no more to get this window
        self.asking = 0                       # the lease in flight (0: none)

    def decide(self, cost: int, store_up: bool) -> int:
        if cost > self.limit:
            return TOO_LARGE
        if self.have >= cost:
            return COVERED
        if self.exhausted:
            return SPENT
        if not store_up:
            return DOWN
        if cost - self.have <= min(max(self.lease, cost), self.room()):
            return CREDIT
        return BURST

    def take(self, cost: int) -> None:
        self.have -= cost

    def give(self, amount: int) -> None:
        """Back to what is held (a reservation's unused part) or, negative, charged (what a
        request used beyond it: owed, and asked for with the next lease)."""
        self.have += amount

    def ask(self) -> int:
        """How much to lease now (0: nothing): below half a lease, a lease plus what is
        owed; never while one is in flight or once the window is spent."""
        # (`have + have`, not `have * 2`: mypyc multiplies in C only operands below 2**30,
        # so a large limit (tpm 10**9 and up), or any debt, took Python's int path.)
        if self.exhausted or self.asking or self.have + self.have >= self.lease:
            return 0
        return self.lease - min(self.have, 0)

    def failed(self) -> None:
        """The lease in flight failed (the store is down): ask again later."""
        self.asking = 0

    def room(self) -> int:
        """This replica's share of the room the store said was left at the last lease."""
        return (self.limit - self.shared) // self.peers

    def granted(self, asked: int, got: int, shared: int, peers: int = 1) -> None:
        self.have += got
        self.shared = shared
        self.peers = max(1, peers)
        self.asking = 0
        if got < asked:
            self.exhausted = True

    def relimit(self, limit: int, lease: int, whole: bool) -> None:
        """New limits (a reload): memory keeps what was spent; a lease keeps what it holds."""
        if whole:
            self.have += limit - self.limit
            self.shared = limit
        self.limit, self.lease = limit, lease
        self.limit_text = b"%d" % limit
        self.exhausted = whole

    def remaining(self) -> int:
        """What the subject may still take this window, as far as this replica knows: the
        room left in the shared counter plus what this replica holds unspent (less what it
        owes)."""
        return min(self.limit, max(0, self.limit - self.shared + self.have))


class Slots:
    """One subject's max_concurrent, as one replica sees it."""

    __slots__ = ("active_at", "asked_at", "asking", "block", "full", "held", "in_use",
                 "limit", "renew_at", "ttl", "valid_until")

    def __init__(self, limit: int, block: int, ttl: float, *, whole: bool = False):
        self.limit = limit
        self.block = block
        self.ttl = ttl
        self.held = limit if whole else 0
        self.in_use = 0
        self.full = whole                 # the store granted less than asked
        self.valid_until = math.inf if whole else 0.0
        self.asking = False
        self.asked_at = -math.inf
        self.renew_at = math.inf
        self.active_at = -math.inf        # the last admission

    def usable(self, now: float) -> int:
        return self.held if now < self.valid_until else 0

    def decide(self, now: float, store_up: bool) -> int:
        usable = self.usable(now)
        if self.in_use < usable:
            return COVERED
        if not store_up:
            return DOWN
        if self.full and now < self.asked_at + RECHECK:
            return SPENT   # (after RECHECK, a credit asks again: slots may have freed)
        if self.in_use < min(self.limit, usable + self.block):
            return CREDIT
        return SPENT if usable >= self.limit else BURST

    def take(self, now: float) -> None:
        self.in_use += 1
        self.active_at = now

    def free(self) -> None:
        if self.in_use > 0:
            self.in_use -= 1

    def target(self, now: float) -> int:
        """The holding wanted: what is in use plus a block of headroom while the subject is
        active (an admission within the TTL), just what is in use once it is idle."""
        headroom = self.block if now - self.active_at < self.ttl else 0
        return min(self.limit, self.in_use + headroom)

    def wants(self, now: float) -> int:
        """The holding to ask the store for now (absolute), or -1: more when short (a full
        store at most every RECHECK), less when a block too much is held, the same to renew
        it every third of the TTL."""
        if self.asking:
            return -1
        target = self.target(now)
        if target > self.held:
            if self.full and now < self.asked_at + RECHECK:
                return -1
            return target
        if target + self.block < self.held or (self.held > 0 and now >= self.renew_at):
            return target
        return -1

    def failed(self) -> None:
        self.asking = False

    def granted(self, asked: int, got: int, asked_at: float) -> None:
        """The store's answer to an ask sent at `asked_at` (the store's TTL starts later, so
        the holding ends here first)."""
        self.held = got
        self.full = got < asked
        self.asking = False
        self.asked_at = asked_at
        self.valid_until = asked_at + self.ttl
        self.renew_at = asked_at + self.ttl / 3 if got > 0 else math.inf

    def relimit(self, limit: int, block: int, whole: bool) -> None:
        self.limit, self.block = limit, block
        if whole:
            self.held = limit
