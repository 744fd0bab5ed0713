"""A request's fingerprints: a hash of its canonical parameters, with and without content.

`exact` covers everything the engine is asked (the text included) but what does not change the
engine's work: streaming, the caller's ids, the seed, the prefix-cache salt (a tenant's, which
the gateway sets: the same killer from two tenants is one request). `params` covers the same
minus the content (messages, prompt, input, ...: the conversation, however long): the shape
of the request, which is what kills an engine far more often than its words (vLLM 0.11:
`"structured_outputs": {}`). Canonical: keys sorted, compact JSON; 16 hex digits of BLAKE2b.

Computed where needed (the quarantine at admission, only while it holds anything; incident
suspects; `warden audit show`), never for every request on the hot path.
"""

from __future__ import annotations

import hashlib

import orjson

VOLATILE = frozenset({"stream", "stream_options", "user", "request_id", "seed", "priority",
                      "cache_salt"})
CONTENT = frozenset({"messages", "prompt", "input", "suffix", "documents"})
_PARAMS_SKIP = VOLATILE | CONTENT


def _digest(kind: str, canonical: dict) -> str:
    data = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return f"{kind}:{hashlib.blake2b(data, digest_size=8).hexdigest()}"


def exact_fingerprint(body: dict) -> str:
    return _digest("x", {k: v for k, v in body.items() if k not in VOLATILE})


def params_fingerprint(body: dict) -> str:
    return _digest("p", {k: v for k, v in body.items() if k not in _PARAMS_SKIP})


def fingerprints(body: object) -> dict[str, str] | None:
    if not isinstance(body, dict):
        return None
    return {"exact": exact_fingerprint(body), "params": params_fingerprint(body)}
