"""What a finished exchange used, as the limits settle it: the Responses API's usage
(`input_tokens`, `output_tokens`) counts as chat's does, for tokens and for cost."""

from __future__ import annotations

from warden.exchange import Exchange
from warden.tenancy.answers import Quota, Ticket
from warden.tenancy.budget import cost_of
from warden.tenancy.settle import cost_used, tokens_used, usage_of

PRICE = (0.60, 2.40)  # per million tokens in, out


def finished(body: bytes, endpoint: str) -> Exchange:
    exchange = Exchange(b"rid", endpoint, "10.0.0.1", 1.0)
    exchange.sent_at, exchange.status = 1.1, 200
    exchange.captured = [body]
    return exchange


def ticket() -> Ticket:
    made = Ticket(5000, 0, Quota(), cost=cost_of(PRICE, 1000, 4000))  # what was reserved
    made.price = PRICE
    return made


def test_a_responses_answer_costs_its_own_tokens_not_the_reservation():
    exchange = finished(b'{"object":"response","status":"completed","usage":{"input_tokens":'
                        b'12,"output_tokens":30,"total_tokens":42}}', "/v1/responses")
    usage = usage_of(exchange)
    assert usage is not None and (usage["prompt_tokens"], usage["completion_tokens"]) == (12, 30)
    assert tokens_used(exchange, 5000, usage) == 42
    assert cost_used(exchange, ticket(), usage) == cost_of(PRICE, 12, 30)


def test_a_chat_answer_is_read_as_it_is():
    exchange = finished(b'{"choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
                        b'"completion_tokens":30,"total_tokens":42}}', "/v1/chat/completions")
    usage = usage_of(exchange)
    assert usage == {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    assert cost_used(exchange, ticket(), usage) == cost_of(PRICE, 12, 30)
    assert exchange.finish_reasons == ["stop"]
