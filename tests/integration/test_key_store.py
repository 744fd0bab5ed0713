"""API keys kept in PostgreSQL (auth.store) against the real server (127.0.0.1:5432, database
`test`; a schema of each test's own, dropped afterwards; no server is a failure, not a skip):
a key made through the admin API works with OpenAI's SDK; a revoke or a rotation on one
gateway reaches another gateway process within a second; a database that goes away leaves
the keys held working and is read again in full when it is back; a store never reached holds
the gateway unready; the admin API's mistakes are answered in OpenAI's envelope."""

from __future__ import annotations

import json
import logging
import time
import uuid

import openai
import pytest
import yaml
from openai import OpenAI

from tests.harness import GatewayThread, http, serve, wait_until
from tests.postgres_support import DSN, sql
from tests.tcp_proxy import FORWARD, REFUSE, TcpProxy
from warden.config.limits_schema import LimitValues

MESSAGES = [{"role": "user", "content": "hi"}]
CONFIG_KEY = "wk-config-key-of-the-search-team-01"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def schema():
    name = f"warden_keys_{uuid.uuid4().hex[:12]}"
    yield name
    sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def auth(schema: str, url: str = DSN, **store) -> dict:
    return {"mode": "required",
            "tenants": {"search": {"models": ["sim-*"]}, "other": {"models": ["other-*"]}},
            "keys": [{"id": "config-key", "tenant": "search", "value": CONFIG_KEY}],
            "store": {"url": url, "schema": schema, **store}}


def admin(gw_url: str, method: str, path: str, body: dict | None = None):
    """(status, the answer as JSON) of one admin API call."""
    status, _, answer = http(method, f"{gw_url}/admin/keys{path}",
                             json.dumps(body).encode() if body is not None else None, JSON)
    return status, json.loads(answer) if answer else None


def chat(gw_url: str, key: str) -> int:
    """The status of one small chat completion sent with `key`."""
    return http("POST", f"{gw_url}/v1/chat/completions", json.dumps(
        {"model": "sim-model", "messages": MESSAGES, "max_tokens": 1}).encode(),
        {**JSON, "Authorization": f"Bearer {key}"})[0]


def within_a_second(predicate, what: str) -> float:
    """Poll `predicate` until true; how long it took (failing past 1 s)."""
    started = time.monotonic()
    wait_until(predicate, timeout=1.0, interval=0.005, what=what)
    return time.monotonic() - started


def test_a_key_made_through_the_admin_api_works_with_the_sdk(fleet, schema):
    gw = GatewayThread({"backends": fleet.backends_config(), "auth": auth(schema)})
    try:
        status, made = admin(gw.url, "POST", "", {
            "id": "ci-bot", "tenant": "search", "models": ["sim-*"], "priority": 3,
            "expires": "2099-01-01T00:00:00Z", "metadata": {"team": "search"},
            "limits": {"rpm": 60, "tpm": 100000}})
        assert status == 201, made
        key = made["key"]
        assert key.startswith("wk-") and made["state"] == "active"
        client = OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                               max_tokens=2)
        assert reply.usage.completion_tokens == 2
        with pytest.raises(openai.PermissionDeniedError):  # (its tenant's grant applies)
            client.chat.completions.create(model="other-model", messages=MESSAGES)
        assert chat(gw.url, CONFIG_KEY) == 200  # (the config's keys work beside them)

        status, listed = admin(gw.url, "GET", "")
        assert status == 200 and listed["read_from"] == "database"
        assert listed["store"]["up"] and listed["store"]["loaded"]
        assert [(k["id"], k["source"]) for k in listed["keys"]] == [
            ("config-key", "config"), ("ci-bot", "store")]
        status, shown = admin(gw.url, "GET", "/ci-bot")
        assert status == 200 and shown["limits"] == made["limits"]  # (as given)
        assert shown["metadata"] == {"team": "search"} and shown["priority"] == 3
        held = gw.call(lambda: gw.gateway.parts.keys.ring.find(key.encode()))
        assert held.limits == LimitValues(rpm=60, tpm=100000)
        digest = sql(f"SELECT encode(sha256, 'hex') AS h FROM {schema}.api_keys")[0]["h"]
        for body in (listed, shown):  # never the key, nor its hash
            assert key not in json.dumps(body) and digest not in json.dumps(body)
        _, _, ready = http("GET", f"{gw.url}/ready")
        assert json.loads(ready)["keys"]["up"] is True

        # A revoke by hand, in SQL, is heard as well (the table's trigger tells of it).
        sql(f"UPDATE {schema}.api_keys SET revoked = now() WHERE id = 'ci-bot'")
        within_a_second(lambda: chat(gw.url, key) == 401, "a revoke in SQL to be heard")
    finally:
        gw.stop()


def test_a_change_never_notified_is_found_by_the_periodic_compare(fleet, schema):
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "auth": auth(schema, refresh="200ms")})
    try:
        _, made = admin(gw.url, "POST", "", {"id": "unheard"})
        sql(f"ALTER TABLE {schema}.api_keys DISABLE TRIGGER api_keys_notify")
        sql(f"UPDATE {schema}.api_keys SET revoked = now() WHERE id = 'unheard'")
        wait_until(lambda: chat(gw.url, made["key"]) == 401, timeout=5,
                   what="the compare to find the revoke")
        assert ready_body(gw)["keys"]["out_of_step"] == 1
    finally:
        gw.stop()


def test_revoke_and_rotate_reach_another_gateway_process_within_a_second(fleet, schema,
                                                                         tmp_path):
    here = GatewayThread({"backends": fleet.backends_config(), "auth": auth(schema)})
    config = yaml.safe_dump({"backends": fleet.backends_config(), "auth": auth(schema),
                             "recorder": {"enabled": False}})
    there, there_url = serve(config, tmp_path)
    try:
        _, made = admin(here.url, "POST", "", {"id": "shared", "tenant": "search"})
        old = made["key"]
        within_a_second(lambda: chat(there_url, old) == 200, "the other gateway to take it")

        _, rotated = admin(here.url, "POST", "/shared/rotate")
        new = rotated["key"]
        assert new != old and rotated["rotated"] is not None
        assert chat(here.url, old) == 401 and chat(here.url, new) == 200  # here: at once
        within_a_second(lambda: chat(there_url, old) == 401 and chat(there_url, new) == 200,
                        "the other gateway to take the rotation")

        status, revoked = admin(here.url, "POST", "/shared/revoke")
        assert status == 200 and revoked["state"] == "revoked"
        assert chat(here.url, new) == 401
        took = within_a_second(lambda: chat(there_url, new) == 401,
                               "the other gateway to refuse the revoked key")
        assert took < 1.0
        # Revoked keys stay listed (their ids are never reused); rotating one is refused.
        status, error = admin(here.url, "POST", "/shared/rotate")
        assert status == 409 and "revoked" in error["error"]["message"]
        status, error = admin(here.url, "POST", "", {"id": "shared"})
        assert status == 409 and error["error"]["param"] == "id"
    finally:
        there.terminate()
        assert there.wait(timeout=20) == 0
        here.stop()


def test_a_database_gone_keeps_the_keys_held_and_is_read_again_when_back(fleet, schema):
    proxy = TcpProxy("127.0.0.1", 5432)
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "auth": auth(schema, f"postgresql://postgres@{proxy.url_host}/test",
                                     timeout="1s")})
    try:
        _, kept = admin(gw.url, "POST", "", {"id": "kept"})
        _, revoked_meanwhile = admin(gw.url, "POST", "", {"id": "revoked-meanwhile"})
        proxy.set(REFUSE)  # (the open connection is cut too)
        wait_until(lambda: not ready_body(gw)["keys"]["up"], what="the store seen down")
        assert http("GET", f"{gw.url}/ready")[0] == 200  # serving with the keys held
        assert chat(gw.url, kept["key"]) == 200 and chat(gw.url, CONFIG_KEY) == 200
        status, error = admin(gw.url, "POST", "", {"id": "new-while-down"})
        assert status == 503 and error["error"]["code"] == "key_store_unavailable"
        status, listed = admin(gw.url, "GET", "")
        assert status == 200 and listed["read_from"] == "memory"
        assert listed["store"]["up"] is False and listed["store"]["error"]
        assert {k["id"] for k in listed["keys"]} == {"config-key", "kept",
                                                      "revoked-meanwhile"}

        # A change this gateway cannot hear of: it learns it by reading every key again.
        sql(f"UPDATE {schema}.api_keys SET revoked = now() WHERE id = 'revoked-meanwhile'")
        assert chat(gw.url, revoked_meanwhile["key"]) == 200
        proxy.set(FORWARD)
        wait_until(lambda: ready_body(gw)["keys"]["up"], timeout=40, what="the store back")
        assert chat(gw.url, revoked_meanwhile["key"]) == 401
        assert chat(gw.url, kept["key"]) == 200
        assert admin(gw.url, "POST", "", {"id": "new-when-back"})[0] == 201
    finally:
        gw.stop()
        proxy.close()


def ready_body(gw: GatewayThread) -> dict:
    return json.loads(http("GET", f"{gw.url}/ready")[2])


def test_a_store_never_reached_holds_the_gateway_unready_and_says_so_once(fleet, schema,
                                                                           caplog):
    caplog.set_level(logging.ERROR, logger="warden.keys")
    nowhere = TcpProxy("127.0.0.1", 5432)
    nowhere.close()  # (a port that was free a moment ago: nothing listens there)
    gw = GatewayThread({"backends": fleet.backends_config(), "auth": auth(
        schema, f"postgresql://postgres@{nowhere.url_host}/test", timeout="1s")})
    try:
        status, _, body = http("GET", f"{gw.url}/ready")
        keys = json.loads(body)["keys"]
        assert status == 503 and keys["loaded"] is False and keys["up"] is False
        assert chat(gw.url, CONFIG_KEY) == 200  # the config's keys work
        status, error = admin(gw.url, "POST", "", {"id": "x"})
        assert status == 503 and error["error"]["code"] == "key_store_unavailable"
        wait_until(lambda: ready_body(gw)["keys"]["failures"] >= 3, what="three tries")
        told = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(told) == 1 and "refused until they can be read" in told[0].getMessage()
    finally:
        gw.stop()
