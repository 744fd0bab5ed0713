"""Settling what the limits reserved, at each exchange's end (an `ExchangeListener`).

The tokens a request used: its usage as the backend told it (a stream's usage event, which
the gateway asks every limited stream for; a plain response's `usage`); without it (a stream
cut before its end, a body that does not say), a stream's prompt estimate and the events it
relayed (vLLM sends about one token an event), and a plain response what was reserved. An
exchange the backend refused (4xx, 5xx), or that never reached one, used nothing."""

from __future__ import annotations

from warden.exchange import Exchange, NativeListener
from warden.tenancy.answers import Ticket
from warden.tenancy.budget import cost_of
from warden.tenancy.limiter import Limiter
from warden.tenancy.native import native


def usage_of(exchange: Exchange) -> dict | None:
    usage = exchange.read_outcome()  # (a plain response's: parsed once, unless already)
    return usage if isinstance(usage, dict) else None


def tokens_used(exchange: Exchange, reserved: int, usage: dict | None) -> int:
    if usage is not None:
        total = usage.get("total_tokens")
        if type(total) is int and total >= 0:
            return total
    if not exchange.sent_at or exchange.status >= 400:
        return 0
    if exchange.stream:
        return exchange.prompt_estimate + exchange.events
    return reserved


def cost_used(exchange: Exchange, ticket: Ticket, usage: dict | None) -> int:
    """In millionths (tenancy/budget.py), by the ticket's price: the usage's prompt and
    completion tokens; without them, as `tokens_used` guesses (a stream: its prompt
    estimate and the events relayed; a plain response: what was reserved)."""
    price = ticket.price
    if price is None:
        return 0
    if usage is not None:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(prompt) is int and prompt >= 0:
            if type(completion) is not int or completion < 0:
                completion = 0
            return cost_of(price, prompt, completion)
    if not exchange.sent_at or exchange.status >= 400:
        return 0
    if exchange.stream:
        return cost_of(price, exchange.prompt_estimate, exchange.events)
    return ticket.cost


class LimitSettler(NativeListener):
    def __init__(self, limiter: Limiter):
        self._limiter = native(limiter)   # (called through its compiled base: C calls)
        self.hears_started = False

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        ticket = exchange.limits_ticket
        if ticket is None:  # (most exchanges, without limits)
            return
        assert isinstance(ticket, Ticket)
        usage = usage_of(exchange)
        used = tokens_used(exchange, ticket.tokens, usage)
        cost = cost_used(exchange, ticket, usage)
        self._limiter.settle(ticket, used, None, cost)
