"""A large body waits for its key before it is parsed (parsing takes the event loop's time and
~30 times the body in memory): refused from its head alone, as the stages would have, the
address's limit counting it first."""

from __future__ import annotations

import json

import pytest

from tests.harness import GatewayThread, SimProcess, http
from tests.integration.test_auth import GOOD, auth


@pytest.fixture(scope="module")
def open_sim():
    sim = SimProcess(1)
    yield sim
    sim.stop()


def test_a_large_body_is_parsed_only_once_its_key_is_known(open_sim):
    """Parsing takes the loop's time and ~30 times the body in memory: a body over 64 KiB
    without a known key is refused before it (so its JSON, broken here, is never read); a
    known key's is read as any other."""
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": auth()})
    broken = b'{"model": "sim-model", "prompt": "' + b"x" * 100_000   # (unterminated)
    whole = json.dumps({"model": "sim-model", "prompt": "x" * 100_000,
                        "max_tokens": 1}).encode()
    try:
        for key, body, status, code in [
                ("wk-not-a-key-0000000000000000000", broken, 401, "invalid_api_key"),
                (None, broken, 401, None),
                (GOOD, broken, 400, "invalid_request"),
                (GOOD, whole, 200, None)]:
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Authorization"] = f"Bearer {key}"
            answered, _, payload = http("POST", f"{gw.url}/v1/completions", body, headers)
            assert answered == status, payload[:200]
            if status != 200:
                assert json.loads(payload)["error"]["code"] == code
    finally:
        gw.stop()


def test_key_guesses_with_large_bodies_are_still_counted_per_address(open_sim):
    """Not parsed, they still meet the address's limit before the keys' 401."""
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": auth(),
                        "rate_limits": {"per_ip_rpm": 2}})
    guess = json.dumps({"model": "sim-model", "prompt": "x" * 100_000}).encode()
    try:
        statuses = [http("POST", f"{gw.url}/v1/completions", guess,
                         {"Content-Type": "application/json",
                          "Authorization": f"Bearer wk-guess-{n:024d}"})[0] for n in range(3)]
        assert statuses == [401, 401, 429]
    finally:
        gw.stop()
