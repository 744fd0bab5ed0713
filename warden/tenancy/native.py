"""What the shipped limiters (tenancy/leased.py, tenancy/exact.py) have in common, below
both: the subjects a request is counted against, and `NativeLimiter`, their base class.

The admission stages and the settlement call `admit` and `settle` through `NativeLimiter`:
compiled, that is a C call through the class's table, where one through the `Limiter`
protocol (tenancy/limiter.py, which holds the contract) is a Python method call (~1k
instructions). They take the limiter through `native`, once: a limiter that is not one (a
test's) is wrapped in a `LimiterAdapter`. (The result is typed `NativeLimiter`: narrowed from
a `Limiter` by `isinstance` alone, its type is an intersection mypyc does not know, and a
call on it is a Python one.)"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import Refusal, Ticket

if TYPE_CHECKING:  # (limiter.py builds the shipped limiters, which import this module)
    from warden.tenancy.limiter import Limiter

# (name, limits) of each subject a request is counted against: its key's, its tenant's.
Subjects = Sequence[tuple[str, LimitValues]]


class NativeLimiter:
    refusals: dict[tuple[str, str], int]   # (limit, subject kind) -> 429s (the stages count)
    clock: Callable[[], float]   # the wall clock its windows are decided by (the stages read it)

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal | Future[Ticket | Refusal]:
        raise NotImplementedError

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None:
        raise NotImplementedError


class LimiterAdapter(NativeLimiter):
    """A limiter that is not a `NativeLimiter`, behind its face (the same refusal counts)."""

    def __init__(self, limiter: Limiter):
        self.limiter = limiter
        self.refusals = limiter.refusals
        self.clock = lambda: limiter.clock()   # (its clock when read: a test may swap it)

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal | Future[Ticket | Refusal]:
        return self.limiter.admit(subjects, tokens, now, cost)

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None:
        self.limiter.settle(ticket, used_tokens, now, used_cost)


def native(limiter: Limiter | NativeLimiter) -> NativeLimiter:
    return limiter if isinstance(limiter, NativeLimiter) else LimiterAdapter(limiter)
