"""Limits as admission stages (rate_limits, and the `limits` of keys and tenants): a request
takes its share (one request, its tokens, a slot in flight) of every limit that applies, or is
refused with OpenAI's 429 and its `Retry-After` and `x-ratelimit-*` lines; the same lines go
on every answer it gets. What is reserved is settled when the exchange ends (tenancy.settle).

Tokens are reserved at the door: the prompt's estimate (its characters / 4) and the output it
asks for (`max_tokens`, ..., or `rate_limits.default_max_tokens`). A stream whose client did
not ask for its usage is asked for it anyway (`stream_options.include_usage`), and the usage
event is taken out of what the client gets (stream.usage_strip): its end settles by the real
count. The leased mode answers at once; the exact mode waits on Redis (a future)."""

from __future__ import annotations

import asyncio
from asyncio import Future
from collections.abc import Callable
from typing import Final

from warden.admission.parse import forward_changed
from warden.admission.stage import NativeStage, StageResult
from warden.config.limits_schema import LimitValues
from warden.errors import (
    InsufficientQuota,
    LimitsUnavailable,
    ModelNotPriced,
    RateLimited,
    WardenError,
)
from warden.guard.lax import lax_bool, lax_int
from warden.guard.prompt_size import prompt_tokens_at_least
from warden.proxy.relay import Relay
from warden.stream.usage_strip import UsageStripper
from warden.tenancy.answers import METRIC_KIND, Refusal, Ticket
from warden.tenancy.budget import Prices, cost_of
from warden.tenancy.keys import ApiKey
from warden.tenancy.limiter import Limiter
from warden.tenancy.native import Subjects, native

CHARS_PER_TOKEN: Final = 4  # (an estimate for a reservation: settled by the real usage later)
# A reservation's output, at most: one the backend refuses anyway (above any context length),
# and one that the stores can sum (Redis counts in 64-bit integers).
MOST_OUTPUT: Final = 2**31 - 1


def refusal_error(refusal: Refusal, counts: dict[tuple[str, str], int]) -> WardenError:
    """The refusal's error; a 429 is counted in `counts` (limit kind, subject kind)."""
    error: WardenError
    if refusal.status == 503:
        error = LimitsUnavailable(refusal.message)
    else:
        kind = (METRIC_KIND.get(refusal.limit, refusal.limit),
                refusal.subject.partition(":")[0])
        counts[kind] = counts.get(kind, 0) + 1
        error = InsufficientQuota(refusal.message) if refusal.spent_budget \
            else RateLimited(refusal.message)
        if refusal.limit == "tpm":
            error.type = "tokens"
    error.headers = refusal.headers()
    return error


def followed(answer: Future[Ticket | Refusal],
             then: Callable[[Ticket | Refusal], WardenError | None]) -> Future[WardenError | None]:
    """The stage's future for the exact mode's: `then(answer)` once it comes. It resolves
    whatever happens: an exception (a bug) fails it, and the chain answers a 500."""
    done: Future[WardenError | None] = asyncio.get_running_loop().create_future()

    def resolve(came: Future[Ticket | Refusal]) -> None:
        try:
            done.set_result(then(came.result()))
        except Exception as e:
            done.set_exception(e)

    answer.add_done_callback(resolve)
    return done


def subjects_of(key: ApiKey) -> Subjects:
    """The limits that apply to a request of `key`: its own, and its tenant's."""
    subjects = []
    if key.limits is not None:
        subjects.append(("key:" + key.id, key.limits))
    tenant = key.tenant
    if tenant is not None and tenant.limits is not None:
        subjects.append(("tenant:" + tenant.name, tenant.limits))
    return subjects


def output_asked(body: dict, default: int) -> int:
    """The tokens the request may generate, as vLLM reads its fields: chat's
    `max_completion_tokens` when above 0 (vLLM 0.11 reads a 0 as absent), else `max_tokens`,
    else `max_output_tokens` (responses), else `default`; times its sequences (`n`, or
    `best_of` if larger); at most MOST_OUTPUT. (Literal look-ups: a loop over the names'
    tuple costs mypyc a generic iterator, ~3x as much.)"""
    output = _count(body.get("max_completion_tokens"))
    if not output:
        output = _count(body.get("max_tokens"))
        if output is None:
            output = _count(body.get("max_output_tokens"))
            if output is None:   # (most bodies: no count asked)
                output = default
    n = body.get("n")
    best_of = body.get("best_of")
    if n is not None or best_of is not None:
        output *= max(_count(n) or 1, _count(best_of) or 1)
    return output if output <= MOST_OUTPUT else MOST_OUTPUT


def _count(given: object) -> int | None:
    """A count as vLLM reads it (lax: "64", 64.0), or None (absent, negative, not one)."""
    value = given if given is None or type(given) is int else lax_int(given)
    return value if value is not None and value >= 0 else None


def has_cost_budget(subjects: Subjects) -> bool:
    for _, limits in subjects:
        budget = limits.budget
        if budget is not None and budget.cost is not None:
            return True
    return False


class KeySubjects:
    """What a key's requests are counted against, worked out once per key (not per request):
    its subjects, and whether one has a cost budget (then the model's price is needed)."""

    def __init__(self, key: ApiKey):
        self.key = key
        self.subjects = subjects_of(key)
        self.priced = has_cost_budget(self.subjects)


MAX_KEYS_HELD: Final = 100_000   # (keys rotated and revoked leave entries: then start over)


class LimitStage(NativeStage):
    def __init__(self, limiter: Limiter, default_max_tokens: int, prices: Prices):
        self._limiter = native(limiter)   # (called through its compiled base: C calls)
        self._default = default_max_tokens
        self._prices = prices
        self._keys: dict[str, KeySubjects] = {}   # by key id; this runtime's (its config's)

    def _subjects(self, key: ApiKey) -> KeySubjects:
        held = self._keys.get(key.id)
        if held is None or held.key is not key:   # (a key changed: a new ApiKey object)
            if len(self._keys) >= MAX_KEYS_HELD:
                self._keys.clear()
            held = self._keys[key.id] = KeySubjects(key)
        return held

    def admit(self, relay: Relay, body: dict) -> StageResult:
        key = relay.grant
        if not isinstance(key, ApiKey):
            return None
        held = self._subjects(key)
        subjects = held.subjects
        if not subjects:
            return None
        prompt = prompt_tokens_at_least(body, CHARS_PER_TOKEN)[0]
        output = 0 if relay.endpoint == "/v1/embeddings" else output_asked(body, self._default)
        cost = 0
        price: tuple[float, float] | None = None
        if held.priced:   # (the price looked up only under a cost budget)
            model = body.get("model")
            price = self._prices.of(model) if isinstance(model, str) else None
            if price is None:
                return ModelNotPriced(f"model {model!r} has no price (rate_limits.prices), "
                                      "so its cost cannot be counted against this key's "
                                      "budget", param="model")
            cost = cost_of(price, prompt, output)
        # (The limiter's own clock: one ledger, one clock; a fake one in tests and benches.)
        limiter = self._limiter
        answer = limiter.admit(subjects, prompt + output, limiter.clock(), cost)
        # (Asked of the compiled answers first: a pointer comparison each, where
        # `isinstance(answer, Future)` is a generic one, ~250 instructions.)
        if isinstance(answer, (Ticket, Refusal)):
            return self._take(relay, body, prompt, price, answer)
        return self._later(answer, relay, body, prompt, price)  # (the exact mode's future)

    def _later(self, answer: Future[Ticket | Refusal], relay: Relay, body: dict, prompt: int,
               price: tuple[float, float] | None) -> Future[WardenError | None]:
        """The stage's future for the exact mode's. (A closure of its own: one in `admit`
        would make every call keep its locals in an environment object, ~1k instructions.)"""
        return followed(answer, lambda came: self._take(relay, body, prompt, price, came))

    def _take(self, relay: Relay, body: dict, prompt: int, price: tuple[float, float] | None,
              answer: Ticket | Refusal) -> WardenError | None:
        if isinstance(answer, Refusal):
            return refusal_error(answer, self._limiter.refusals)
        answer.price = price
        relay.limits_ticket = answer   # (settled at the exchange's end, a refusal's too)
        relay.prompt_estimate = prompt
        headers = answer.headers()
        relay.response_headers = relay.response_headers + headers if relay.response_headers \
            else headers   # (usually the first lines: no copy)
        if relay.stream and not _asks_usage(body) and relay.endpoint != "/v1/responses":
            # (A Responses stream's last event carries its usage whatever was asked.)
            options = body.get("stream_options")
            asked = {**options} if isinstance(options, dict) else {}
            asked["include_usage"] = True
            if "continuous_usage_stats" in asked:  # (vLLM reads it only with include_usage:
                asked["continuous_usage_stats"] = False  # now it would put usage everywhere)
            body["stream_options"] = asked
            relay.strip = UsageStripper()
            return forward_changed(relay, body)
        return None


def _asks_usage(body: dict) -> bool:
    """As vLLM reads it: any `stream_options` object asks, unless its `include_usage` (True
    when absent) reads false (lax) or is null."""
    options = body.get("stream_options")
    return isinstance(options, dict) and lax_bool(options.get("include_usage", True)) is True


class AddressLimitStage(NativeStage):
    """Requests a minute from one client address (`rate_limits.per_ip_rpm`), before any key
    is looked at: a client guessing keys is slowed as much as any."""

    def __init__(self, limiter: Limiter, rpm: int):
        self._limiter = native(limiter)
        self._values = LimitValues(rpm=rpm)

    def admit(self, relay: Relay, body: dict) -> StageResult:
        subjects = [("ip:" + relay.client_ip, self._values)]
        limiter = self._limiter
        answer = limiter.admit(subjects, 0, limiter.clock())
        if isinstance(answer, (Ticket, Refusal)):
            return self._take(answer)
        return followed(answer, self._take)

    def _take(self, answer: Ticket | Refusal) -> WardenError | None:
        if isinstance(answer, Refusal):
            return refusal_error(answer, self._limiter.refusals)
        self._limiter.settle(answer, 0)  # (only requests are counted: nothing to hold)
        return None
