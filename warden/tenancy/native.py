"""What the shipped limiters (tenancy/leased.py, tenancy/exact.py) have in common, below
both: the subjects a request is counted against, and `NativeLimiter`, their base class.

The admission stage and the settlement call `admit` and `settle` through `NativeLimiter`:
compiled, that is a C call through the class's table, where one through the `Limiter`
protocol (tenancy/limiter.py, which holds the contract) is a Python method call (~1k
instructions). A limiter that is not one (a test's) is called through the protocol, as a
listener that is not an `exchange.NativeListener` is told through its protocol. (Hold it in
an attribute declared `NativeLimiter | None`: narrowed from a `Limiter` by `isinstance`
alone, its type is an intersection mypyc does not know, and the call is a Python one.)"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Sequence

from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import Refusal, Ticket

# (name, limits) of each subject a request is counted against: its key's, its tenant's.
Subjects = Sequence[tuple[str, LimitValues]]


class NativeLimiter:
    refusals: dict[tuple[str, str], int]   # (limit, subject kind) -> 429s (the stages count)

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal | Future[Ticket | Refusal]:
        raise NotImplementedError

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None:
        raise NotImplementedError
