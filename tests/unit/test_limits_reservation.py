"""What the limits stage reserves for a request's output, as vLLM reads the fields (chat's
`max_completion_tokens` before `max_tokens`, lax values, `n` sequences), bounded; and a body
it changes that cannot be written again is refused with its reservation given back."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_admission_chain import Rig, Stage
from warden.admission.limits import MOST_OUTPUT, LimitStage, output_asked
from warden.config.limits_schema import LimitValues, RateLimitSpec
from warden.tenancy.budget import Prices
from warden.tenancy.keys import ApiKey, Models
from warden.tenancy.limiter import build_limiter
from warden.tenancy.settle import LimitSettler


@pytest.mark.parametrize("body, asked", [
    ({}, 16),                                                   # the default
    ({"max_tokens": 7}, 7),
    ({"max_tokens": "7"}, 7),                                   # lax, as vLLM reads it
    ({"max_tokens": 7.0}, 7),
    ({"max_tokens": -3}, 16),                                   # not a count: the default
    ({"max_completion_tokens": 900, "max_tokens": 1}, 900),     # chat: this one first
    ({"max_completion_tokens": 0, "max_tokens": 5}, 5),         # (0: read as absent)
    ({"max_output_tokens": 30}, 30),                            # responses
    ({"max_tokens": 10, "n": 4}, 40),                           # every sequence
    ({"max_tokens": 10, "n": 2, "best_of": "3"}, 30),
    ({"n": 3}, 48),
    ({"max_tokens": 10**19}, MOST_OUTPUT),                      # bounded
    ({"max_tokens": 2**30, "n": 64}, MOST_OUTPUT),
])
def test_the_output_reserved_is_what_vllm_may_generate(body, asked):
    assert output_asked(body, 16) == asked


class Granting(Stage):
    """Stands for the key stage: the request is a limited key's."""

    def admit(self, relay, body: dict):
        relay.grant = ApiKey("k", None, Models(None), limits=LimitValues(max_concurrent=1))
        return super().admit(relay, body)


@pytest.mark.asyncio
async def test_a_stream_too_deep_to_write_again_is_a_400_and_frees_its_slot():
    """The stage asks a stream for its usage (a changed body): orjson reads 1,024 levels but
    writes 255, so a deeper body is refused, and its slot in flight given back (else a few
    such requests would hold a key's `max_concurrent` for good)."""
    limiter = build_limiter(RateLimitSpec(store="memory"))
    deep = "[" * 300 + "]" * 300
    body = (b'{"model":"elsewhere","stream":true,"messages":[{"role":"user","content":"hi"}],'
            b'"extra":' + deep.encode() + b"}")
    for _ in range(2):   # (the second finds the one slot free again)
        rig = Rig([Granting(), LimitStage(limiter, 16, Prices({}))], [LimitSettler(limiter)])
        rig.send_body(body)
        status, answer = rig.answer()
        assert status == 400 and "nested too deeply" in answer["error"]["message"]
    state = limiter.states["key:k"]  # type: ignore[attr-defined]
    assert state.slots.in_use == 0
    await asyncio.sleep(0)
