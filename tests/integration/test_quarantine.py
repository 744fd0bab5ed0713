"""The quarantine end to end: an engine dies on a request, and the client's own automatic
retry of it is refused before it reaches a second engine; the fingerprint is listed and lifted
with `warden quarantine`; replicas share it through the real Redis, a canary takes what is
held, and a second death blocks it fleet-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import openai
import pytest

from tests.harness import GatewayThread, SimProcess, http, wait_until
from tests.unit.test_quarantine import REDIS, prefix  # noqa: F401 - a fixture

JSON = {"Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "x"}]
POISON = {"model": "sim-model", "messages": MESSAGES,
          "structured_outputs": {}}  # kills the sim's vLLM 0.11 engine (the seed's crash)


def alive(sim: SimProcess) -> list[int]:
    up = []
    for node in range(sim.nodes):
        try:
            if http("GET", f"{sim.url(node)}/health", timeout=2)[0] == 200:
                up.append(node)
        except OSError:
            pass
    return up


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", "quarantine", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def dying_fleet():
    sim = SimProcess(3, "--restart-after", "-1")
    yield sim
    sim.stop()


def test_a_clients_retry_of_the_killer_never_reaches_a_second_engine(dying_fleet):
    sim = dying_fleet
    # The rules only watch (enforcing, they would normalize the poison away); the quarantine
    # has its own mode and enforces. Round robin: the plain request below goes to the node
    # after the dead one (until health checks, issue 6, a dead node keeps its share).
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"},
                        "routing": {"policy": "round_robin"}})
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=2)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                           extra_body={"structured_outputs": {}})
        error = refused.value.body
        assert error["code"] == "quarantined" and "warden quarantine lift" in error["message"]
        assert len(alive(sim)) == 2  # one engine died, the retry reached no other

        reworded = {**POISON, "messages": [{"role": "user", "content": "other words"}]}
        status, _, body = http("POST", f"{gw.url}/v1/chat/completions",
                               json.dumps(reworded).encode(), JSON)
        assert status == 403, body  # the shape is held, not only the exact request
        plain = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                               max_tokens=3)
        assert plain.choices[0].message.content
        assert gw.metric("warden_quarantine_entries", 'state="held"') >= 2

        listed = cli("list", "--url", gw.url)
        assert listed.returncode == 0, listed.stderr
        assert "held" in listed.stdout and "structured_outputs" in listed.stdout
        entries = json.loads(cli("list", "--url", gw.url, "--json").stdout)
        exact = next(e["fingerprint"] for e in entries if e["kind"] == "exact"
                     and e["reasons"])
        lifted = cli("lift", exact, "x:0000", "--url", gw.url)
        assert lifted.returncode == 1  # one of the two was not in quarantine
        assert f"lifted {exact}" in lifted.stdout and "not in quarantine: x:0000" in \
            lifted.stderr
        assert cli("lift", "--all", "--url", gw.url).returncode == 0
        assert json.loads(http("GET", f"{gw.url}/admin/quarantine")[2])["quarantine"] == []
        status, _, body = http("POST", f"{gw.url}/admin/quarantine/lift", b'{"x": 1}', JSON)
        assert status == 400 and json.loads(body)["error"]["param"] == "fingerprints"
    finally:
        gw.stop()


def test_replicas_share_it_through_redis_a_canary_takes_it_and_two_deaths_block_it(
        dying_fleet, prefix):  # noqa: F811
    sim = dying_fleet
    quarantine = {"store": "redis", "redis_url": REDIS, "key_prefix": prefix,
                  "refresh": "100ms"}
    guard = {"mode": "dry_run", "quarantine": quarantine}
    nodes = sim.backends_config()
    one = GatewayThread({"backends": [nodes[0]], "guard": guard})
    two = GatewayThread({"backends": [nodes[1], {**nodes[2], "canary": True}],
                         "guard": guard})
    poison = json.dumps({**POISON, "request_id": uuid.uuid4().hex}).encode()
    try:
        status, _, _ = http("POST", f"{one.url}/v1/chat/completions", poison, JSON)
        assert status == 500 and alive(sim) == [1, 2]
        wait_until(lambda: two.call(lambda: bool(two.gateway.quarantine.entries)),
                   what="the other replica to read the strike from Redis")

        status, headers, _ = http("POST", f"{two.url}/v1/chat/completions", poison, JSON)
        assert status == 500 and sim.node_of(headers) == 2  # only the canary got it
        assert alive(sim) == [1]

        def blocked() -> bool:
            entries = one.call(lambda: list(one.gateway.quarantine.entries.values()))
            return any(e.blocked for e in entries)
        wait_until(blocked, what="a second death to block the fingerprint")
        status, _, body = http("POST", f"{two.url}/v1/chat/completions", poison, JSON)
        assert status == 403 and b"fleet-wide" in body
        assert os.environ.get("WARDEN_TEST_REDIS", REDIS)  # the real server, shared
    finally:
        one.stop()
        two.stop()
