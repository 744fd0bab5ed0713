"""API keys through the gateway, as OpenAI's SDK meets them: no key, a wrong one, an expired
one (401), a model the key or its tenant may not use (403), a good one (200); the client's
credentials never reach a backend; a reload revokes a key at once; the admin API locked."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from http.client import HTTPConnection

import openai
import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http
from warden.tenancy.keys import key_hash

GOOD = "wk-good-key-for-the-search-team-0001"
NARROW = "wk-narrow-key-only-for-other-models"
EXPIRED = "wk-expired-key-0000000000000000000"
ADMIN = "wk-admin-key-00000000000000000000000"
MESSAGES = [{"role": "user", "content": "hi"}]


def auth(**extra) -> dict:
    return {"mode": "required",
            "tenants": {"search": {"models": ["sim-*"]}},
            "keys": [{"id": "good", "tenant": "search", "hash": key_hash(GOOD)},
                     {"id": "narrow", "value": NARROW, "models": ["other-*"]},
                     {"id": "old", "value": EXPIRED, "expires": "2020-01-01T00:00:00Z"}],
            **extra}


@pytest.fixture(scope="module")
def keyed_sim():
    """Nodes that, like vLLM with --api-key, want GOOD as their bearer token: a gateway that
    passed the client's key on would get answers from them."""
    sim = SimProcess(2, "--api-key", GOOD)
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def open_sim():
    sim = SimProcess(1)
    yield sim
    sim.stop()


def client(gw: GatewayThread, key: str) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def test_keys_decide_who_may_use_which_model(open_sim):
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": auth()})
    try:
        reply = client(gw, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                         max_tokens=2)
        assert reply.usage.completion_tokens == 2
        status, _, body = http("POST", f"{gw.url}/v1/chat/completions",
                               b'{"model":"sim-model","messages":[]}',
                               {"Content-Type": "application/json"})
        assert status == 401  # (the SDK refuses to send without a key: asked by hand)
        assert json.loads(body)["error"]["code"] is None  # (as OpenAI: none when missing)
        for wrong in ("wk-no-such-key-000000000000000", EXPIRED, "x" * 10_000):
            with pytest.raises(openai.AuthenticationError) as refused:
                client(gw, wrong).chat.completions.create(model="sim-model",
                                                          messages=MESSAGES)
            assert refused.value.body["code"] == "invalid_api_key"
            assert wrong not in str(refused.value.body)  # (a wrong key is not echoed)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client(gw, NARROW).chat.completions.create(model="sim-model", messages=MESSAGES)
        assert denied.value.body["code"] == "model_not_allowed"
        status, _, _ = http("POST", f"{gw.url}/v1/chat/completions",
                            b'{"model":"sim-model","messages":[]}',
                            {"Authorization": "Basic Zm9vOmJhcg==",
                             "Content-Type": "application/json"})
        assert status == 401
        status, _, _ = http("POST", f"{gw.url}/v1/chat/completions",
                            b'{"model":"sim-model","messages":[{"role":"user","content":"x"}]}',
                            {"api-key": GOOD, "Content-Type": "application/json"})
        assert status == 200  # (as Azure's clients send it)
        assert gw.metric("warden_tenant_requests_total", 'status="200",tenant="search"') == 2
    finally:
        gw.stop()


def test_client_credentials_never_reach_a_backend(keyed_sim):
    """Auth off: the client's key goes on (the backend has none of its own), and these nodes
    accept it. Auth on: the same key admits the request at the gateway, and the nodes, which
    never see it, refuse."""
    # (their models given: the nodes would refuse the gateway's /v1/models without the key)
    backends = [{**b, "models": ["sim-model"]} for b in keyed_sim.backends_config()]
    plain = GatewayThread({"backends": backends})
    keyed = GatewayThread({"backends": backends, "auth": auth()})
    try:
        assert client(plain, GOOD).chat.completions.create(
            model="sim-model", messages=MESSAGES, max_tokens=1).choices
        with pytest.raises(openai.AuthenticationError) as backend_said:
            client(keyed, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                        max_tokens=1)
        assert backend_said.value.response.headers["x-upstream-status"] == "401"
    finally:
        plain.stop()
        keyed.stop()


def test_a_reload_revokes_a_key_at_once(open_sim):
    config = {"backends": open_sim.backends_config(), "auth": auth()}
    gw = GatewayThread(config)
    try:
        assert client(gw, GOOD).models.list() is not None  # (not proxied: no key needed)
        client(gw, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                 max_tokens=1)
        revoked = auth()
        revoked["keys"] = [k for k in revoked["keys"] if k["id"] != "good"]
        gw.reload({**config, "auth": revoked})
        with pytest.raises(openai.AuthenticationError):
            client(gw, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                     max_tokens=1)
    finally:
        gw.stop()


def test_one_connection_is_judged_by_each_requests_own_key(open_sim):
    """A connection remembers its last key found (tenancy.keys.ProvenKey): a wrong key on it
    afterwards is still refused, the right one still admitted, and a reload that revokes
    the remembered key refuses it on that connection at once."""
    config = {"backends": open_sim.backends_config(), "auth": auth()}
    gw = GatewayThread(config)
    body = json.dumps({"model": "sim-model", "messages": MESSAGES, "max_tokens": 1})
    conn = HTTPConnection("127.0.0.1", gw.gateway.port, timeout=10)

    def status(key: str) -> int:
        conn.request("POST", "/v1/chat/completions", body,
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status

    try:
        assert [status(key) for key in (GOOD, GOOD[:-1] + "x", GOOD, NARROW, GOOD)] == \
            [200, 401, 200, 403, 200]
        revoked = auth()
        revoked["keys"] = [k for k in revoked["keys"] if k["id"] != "good"]
        gw.reload({**config, "auth": revoked})
        assert status(GOOD) == 401
    finally:
        conn.close()
        gw.stop()


def test_admin_keys_lock_the_admin_api_and_metrics(open_sim):
    gw = GatewayThread({"backends": open_sim.backends_config(),
                        "auth": auth(admin_keys=[{"id": "ops", "value": ADMIN}],
                                     metrics="admin")})
    try:
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        assert http("GET", f"{gw.url}/admin/backends")[0] == 401
        assert http("GET", f"{gw.url}/admin/backends", headers={
            "Authorization": f"Bearer {GOOD}"})[0] == 401  # a client key is not an admin key
        assert http("GET", f"{gw.url}/admin/backends", headers=bearer)[0] == 200
        assert http("GET", f"{gw.url}/metrics")[0] == 401
        assert http("GET", f"{gw.url}/metrics", headers=bearer)[0] == 200
        assert http("GET", f"{gw.url}/health")[0] == 200
        assert http("GET", f"{gw.url}/ready")[0] == 200
    finally:
        gw.stop()


def test_records_name_the_key_and_tenant_never_the_key(open_sim, tmp_path):
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": auth(),
                        "recorder": {"dir": str(tmp_path), "flush_interval": "10ms"}})
    try:
        client(gw, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                 max_tokens=1)
        with pytest.raises(openai.PermissionDeniedError):
            client(gw, NARROW).chat.completions.create(model="sim-model", messages=MESSAGES)
    finally:
        gw.stop()  # (writes what is pending)
    text = "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
    assert GOOD not in text and NARROW not in text
    assert '"principal":"good"' in text and '"tenant":"search"' in text
    assert '"principal":"narrow"' in text
    found = subprocess.run([sys.executable, "-m", "warden", "audit", "search", "--dir",
                            str(tmp_path), "--tenant", "search", "--json"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(found) == 1 and json.loads(found[0])["start"]["principal"] == "good"


def test_an_admin_listener_of_its_own(open_sim):
    gw = GatewayThread({"backends": open_sim.backends_config(),
                        "admin_listen": "127.0.0.1:0"})
    admin = f"http://127.0.0.1:{gw.gateway.admin_port}"
    try:
        assert gw.gateway.admin_port != gw.gateway.port
        assert http("GET", f"{gw.url}/admin/backends")[0] == 404  # not on the clients' port
        assert http("GET", f"{admin}/admin/backends")[0] == 200
        assert http("POST", f"{admin}/v1/chat/completions", b"{}",
                    {"Content-Type": "application/json"})[0] == 404  # proxies nothing
        for base in (gw.url, admin):
            assert [http("GET", f"{base}{p}")[0] for p in ("/health", "/metrics")] == [200, 200]
        client(gw, "any").chat.completions.create(model="sim-model", messages=MESSAGES,
                                                  max_tokens=1)  # (auth off: no key needed)
        gw.reload({"backends": open_sim.backends_config(), "admin_listen": "127.0.0.1:0"})
        assert http("GET", f"{admin}/admin/backends")[0] == 200  # (kept across a reload)
        # A reload without it: it waits for a restart, wholly (the API stays where it is).
        assert "admin_listen" in gw.reload({"backends": open_sim.backends_config()})
        assert http("GET", f"{admin}/admin/backends")[0] == 200
        assert http("GET", f"{gw.url}/admin/backends")[0] == 404
    finally:
        gw.stop()


def test_a_reload_that_adds_an_admin_listener_leaves_the_api_where_it_is(open_sim):
    gw = GatewayThread({"backends": open_sim.backends_config()})
    try:
        assert "admin_listen" in gw.reload({"backends": open_sim.backends_config(),
                                            "admin_listen": "127.0.0.1:0"})
        assert http("GET", f"{gw.url}/admin/backends")[0] == 200
    finally:
        gw.stop()


@pytest.mark.parametrize("authorization", [
    b"Bearer \xff\xfe\xfd-not-utf8", b"Bearer " + b"k" * 10_000, b"Bearer a b c",
    b"bearer\t" + GOOD.encode() + b"x", b"Token " + GOOD.encode(), b"Bearer ",
])
def test_odd_credentials_get_a_clear_401(open_sim, authorization):
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": auth()})
    body = b'{"model":"sim-model","messages":[{"role":"user","content":"x"}]}'
    try:
        with socket.create_connection(("127.0.0.1", gw.gateway.port), timeout=10) as conn:
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
                         b"content-type: application/json\r\nauthorization: " + authorization
                         + b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            head = conn.recv(65536).split(b"\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 401"), head
    finally:
        gw.stop()


def test_an_isolated_tenant_gets_its_own_cache_salt_whatever_the_client_sends(open_sim,
                                                                              tmp_path):
    config = auth(cache_salt_secret="a-secret-of-sixteen+")
    config["tenants"]["search"]["isolate_cache"] = True
    config["keys"].append({"id": "plain", "value": "wk-plain-key-without-a-tenant-01"})
    gw = GatewayThread({"backends": open_sim.backends_config(), "auth": config,
                        "recorder": {"dir": str(tmp_path), "flush_interval": "10ms"}})
    try:
        for salt in (None, "anothers-salt"):
            extra = {"cache_salt": salt} if salt else {}
            client(gw, GOOD).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                     max_tokens=1, extra_body=extra)
        with pytest.raises(openai.BadRequestError) as bad:  # (a salt LMCache would choke on)
            client(gw, "wk-plain-key-without-a-tenant-01").chat.completions.create(
                model="sim-model", messages=MESSAGES, extra_body={"cache_salt": "a b"})
        assert bad.value.body["param"] == "cache_salt"
    finally:
        gw.stop()
    forwarded = [json.loads(json.loads(line)["forwarded_body"])["cache_salt"]
                 for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()
                 if '"forwarded_body"' in line]
    assert len(forwarded) == 2 and len(set(forwarded)) == 1
    assert forwarded[0].startswith("t-") and "anothers-salt" not in forwarded
