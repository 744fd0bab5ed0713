"""What `admit` answers: a `Ticket` (admitted: settle it once, at the exchange's end) or a
`Refusal` (as data: the admission stage maps it to its error), and the OpenAI-style rate
limit headers both carry (`x-ratelimit-limit-requests`, `-remaining-`, `-reset-`, the same
for tokens; a refusal adds `retry-after` and `retry-after-ms`)."""

from __future__ import annotations

import math
from typing import Final

# What a refusal is about (`Refusal.limit`).
RPM: Final = "rpm"
TPM: Final = "tpm"
CONCURRENT: Final = "max_concurrent"
BUDGET: Final = "budget"             # a day's or a month's tokens or cost (tenancy/budget.py)
UNAVAILABLE: Final = "unavailable"   # the store is down and fail_mode is closed

_WHAT = {RPM: "requests per minute", TPM: "tokens per minute",
         CONCURRENT: "requests in flight", BUDGET: "budget"}
# The metrics' name of each kind (warden_limit_refusals_total{limit=...}).
METRIC_KIND: Final = {RPM: "rpm", TPM: "tpm", CONCURRENT: "concurrency", BUDGET: "budget"}


class Quota:
    """What the headers say: per kind, the limit and what is left of it (-1: the request's
    subjects have no such limit), and when the window resets (seconds from now). With two
    subjects (a key and its tenant), each kind shows the one with the least left."""

    __slots__ = ("limit_requests", "limit_tokens", "remaining_requests", "remaining_tokens",
                 "requests_text", "reset", "texts", "tokens_text")

    def __init__(self, limit_requests: int = -1, remaining_requests: int = -1,
                 limit_tokens: int = -1, remaining_tokens: int = -1, reset: float = 0.0,
                 texts: ResetTexts | None = None):
        self.limit_requests = limit_requests
        self.remaining_requests = remaining_requests
        self.limit_tokens = limit_tokens
        self.remaining_tokens = remaining_tokens
        self.reset = reset
        self.texts = texts    # the limiter's, if it keeps the reset's text (else formatted)
        self.requests_text = self.tokens_text = b""   # the limits' text, if given (or b"")

    def count(self, kind: str, limit: int, remaining: int, text: bytes = b"") -> None:
        """One subject's limit of `kind` (rpm or tpm): kept if it has the least left. `text`:
        the limit as the headers write it, if the caller keeps it (a limit is the same for
        a whole window: written once, not on every response)."""
        if kind == RPM:
            if self.limit_requests < 0 or remaining < self.remaining_requests:
                self.limit_requests, self.remaining_requests = limit, remaining
                self.requests_text = text
        elif self.limit_tokens < 0 or remaining < self.remaining_tokens:
            self.limit_tokens, self.remaining_tokens = limit, remaining
            self.tokens_text = text

    def headers(self) -> bytes:
        """The header lines, each ending in CRLF (none for a kind with no limit). Runs on
        every limited response. Cost rule: mypyc builds a bytes `%` in C (the ints written
        straight into one buffer) only when the format is a literal at the `%` with plain
        `%d`/`%s` conversions; a format held in a name (or `%03d`) goes to the interpreter
        at ~7x the cost, and a str f-string then `.encode()` costs ~2x."""
        texts = self.texts
        reset = texts.of(self.reset) if texts is not None else duration_bytes(self.reset)
        if self.limit_requests >= 0:
            requests = self.requests_text or b"%d" % self.limit_requests
            if self.limit_tokens >= 0:
                tokens = self.tokens_text or b"%d" % self.limit_tokens
                return (b"x-ratelimit-limit-requests: %s\r\nx-ratelimit-remaining-requests: "
                        b"%d\r\nx-ratelimit-reset-requests: %s\r\nx-ratelimit-limit-tokens: "
                        b"%s\r\nx-ratelimit-remaining-tokens: %d\r\nx-ratelimit-reset-tokens: "
                        b"%s\r\n" % (requests, self.remaining_requests, reset, tokens,
                                      self.remaining_tokens, reset))
            return (b"x-ratelimit-limit-requests: %s\r\nx-ratelimit-remaining-requests: "
                    b"%d\r\nx-ratelimit-reset-requests: %s\r\n" % (
                        requests, self.remaining_requests, reset))
        if self.limit_tokens >= 0:
            tokens = self.tokens_text or b"%d" % self.limit_tokens
            return (b"x-ratelimit-limit-tokens: %s\r\nx-ratelimit-remaining-tokens: %d\r\n"
                    b"x-ratelimit-reset-tokens: %s\r\n" % (
                        tokens, self.remaining_tokens, reset))
        return b""


class ResetTexts:
    """The reset's text, kept for the last whole millisecond asked about: a limiter's
    requests within one millisecond (most of them, at thousands a second) share it. Its text
    is that of every time in (`above`, `upto`] milliseconds (the ceiling's rule): a time in it
    is known by two float comparisons, no `math.ceil` call."""

    __slots__ = ("above", "text", "upto")

    def __init__(self) -> None:
        self.above = self.upto = -2.0   # (no time is in it)
        self.text = b""

    def of(self, seconds: float) -> bytes:
        ms = seconds * 1000
        if self.above < ms <= self.upto:
            return self.text
        whole = max(0, math.ceil(ms))
        self.text = duration_ms(whole)
        self.upto = float(whole)
        self.above = whole - 1.0 if whole > 0 else -math.inf   # (0ms: any time not ahead)
        return self.text


def duration_text(seconds: float) -> str:
    """As OpenAI writes its resets: 20ms, 1.5s, 6m0s."""
    return duration_bytes(seconds).decode()


def duration_bytes(seconds: float) -> bytes:
    """`duration_text`, as bytes."""
    return duration_ms(max(0, math.ceil(seconds * 1000)))


def duration_ms(ms: int) -> bytes:
    """`ms` milliseconds as OpenAI writes them (integers only, and literal `%` formats that
    mypyc compiles: no float formatting, no `divmod`). The fraction's digits are those of
    1000 + its milliseconds, less the leading 1 and trailing zeros."""
    if ms < 1000:
        return b"%dms" % ms
    minutes = ms // 60_000
    whole = ms % 60_000 // 1000
    part = ms % 1000
    if part == 0:
        return b"%dm%ds" % (minutes, whole) if minutes else b"%ds" % whole
    digits = (b"%d" % (1000 + part))[1:2 if part % 100 == 0 else 3 if part % 10 == 0 else 4]
    return b"%dm%d.%ss" % (minutes, whole, digits) if minutes else \
        b"%d.%ss" % (whole, digits)


class Ticket:
    """An admitted request's reservation: one request, `tokens` tokens and a slot on each
    subject (and `tokens` or `cost` from each budget). Settle it exactly once
    (`Limiter.settle`), whatever the end. `checked` is False for one admitted unchecked while
    the store was down (fail_mode open)."""

    __slots__ = ("checked", "cost", "price", "quota", "settled", "tokens", "window")

    def __init__(self, tokens: int, window: int, quota: Quota, checked: bool = True,
                 cost: int = 0):
        self.tokens = tokens
        self.cost = cost      # reserved, in millionths (cost budgets; 0: none)
        self.price: tuple[float, float] | None = None   # the model's, set by the stage
        self.window = window
        self.quota = quota
        self.checked = checked
        self.settled = False

    def headers(self) -> bytes:
        """The rate limit headers of the successful response."""
        return self.quota.headers()


class Refusal:
    """A request refused: which subject and limit, when to retry (None: waiting will not
    help, it asks more than the limit), the status to answer (429, or 503 when the store is
    down and fail_mode is closed) and the OpenAI error's code."""

    __slots__ = ("limit", "message", "quota", "retry_after", "status", "subject")

    def __init__(self, subject: str, limit: str, retry_after: float | None, quota: Quota,
                 message: str = ""):
        self.subject = subject
        self.limit = limit
        self.retry_after = retry_after
        self.quota = quota
        self.status = 503 if limit == UNAVAILABLE else 429
        self.message = message or describe(subject, limit, retry_after)

    @property
    def code(self) -> str:
        if self.limit == UNAVAILABLE:
            return "limits_unavailable"
        return "insufficient_quota" if self.spent_budget else "rate_limit_exceeded"

    @property
    def spent_budget(self) -> bool:
        """A budget spent (or a request larger than it): waiting minutes will not help, so
        OpenAI's `insufficient_quota`, and clients are told not to retry (`x-should-retry:
        false`, which the openai SDKs obey; they retry any other 429)."""
        return self.limit == BUDGET and self.retry_after is None

    def headers(self) -> bytes:
        lines = self.quota.headers()
        if self.spent_budget:
            lines += b"x-should-retry: false\r\n"
        if self.retry_after is not None:
            after = max(self.retry_after, 0.001)
            lines += b"retry-after: %d\r\nretry-after-ms: %d\r\n" % (
                math.ceil(after), math.ceil(after * 1000))
        return lines

    def __repr__(self) -> str:
        return f"Refusal({self.subject!r}, {self.limit!r}, {self.retry_after!r})"


def describe(subject: str, limit: str, retry_after: float | None) -> str:
    if limit == UNAVAILABLE:
        return ("rate limits cannot be checked (their store is unreachable) and are set to "
                "refuse meanwhile; retry shortly")
    what = _WHAT.get(limit, limit)
    if retry_after is None:
        return f"request too large for {subject}: it needs more {what} than the limit allows"
    return (f"rate limit reached for {subject} on {what} ({limit}); "
            f"retry in {duration_text(retry_after)}")


def budget_spent(subject: str, per: str, units: int, by_cost: bool, resets: str,
                 quota: Quota) -> Refusal:
    amount = f"{units / 1_000_000:g} (cost)" if by_cost else f"{units} tokens"
    return Refusal(subject, BUDGET, None, quota,
                   f"You exceeded your current quota: {subject} has spent its budget of "
                   f"{amount} for this {per} (UTC), or this request needs more than is left; "
                   f"it resets at {resets}")


def too_large(subject: str, tokens: int, limit: int, quota: Quota) -> Refusal:
    return Refusal(subject, TPM, None, quota,
                   f"request too large for {subject} on tokens per minute (tpm): limit "
                   f"{limit}, requested {tokens}")
