"""Odd request bodies, many of them, through the gateway: each gets a success or a 4xx in the
OpenAI error envelope, never a 5xx, a traceback or a hang. CI runs this interpreted and
compiled (warden/compiled.py), where a value of an unexpected type would raise TypeError at
a typed boundary instead of carrying on."""

from __future__ import annotations

import json
import random

from tests.harness import http

# Values of every JSON kind, odd ones included, put into the fields the gateway, the guard
# and the routing read.
ODD_VALUES = [
    None, True, False, 0, -1, 1.5, 10**30, "", "x", [], [1], [None], {}, {"a": 1},
    [{"role": "user"}], [{"role": 5, "content": {}}], [{"content": [{"type": "image_url"}]}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}],
    {"type": "json_schema"}, {"type": "json_schema", "json_schema": {}}, [[[[[]]]]],
]
FIELDS = [
    "model", "messages", "prompt", "stream", "max_tokens", "n", "stop", "logit_bias",
    "response_format", "tools", "tool_choice", "user", "stream_options", "logprobs",
    "top_logprobs", "temperature", "structured_outputs", "guided_json", "input",
    "prompt_logprobs", "best_of", "allowed_token_ids", "chat_template_kwargs", "seed",
]
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


def test_odd_bodies_get_an_answer_or_a_4xx_envelope_never_a_5xx(gateway):
    rng = random.Random(7)  # (seeded: a failure names a body that can be sent again)
    statuses: dict[int, int] = {}
    for _ in range(300):
        body: dict[str, object] = {"model": "sim-model", "max_tokens": 2,
                                   "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(rng.randint(1, 4)):
            body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
        raw = json.dumps(body).encode()
        status, _, answer = http("POST", gateway.url + rng.choice(PATHS), raw,
                                 {"Content-Type": "application/json"})
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (raw, answer)
        if status >= 400:
            error = json.loads(answer)["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], \
                (raw, answer)
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 100  # (both kinds were sent)
    assert http("GET", gateway.url + "/health")[0] == 200
