"""The admin API's key routes and `warden keys` around them, with a key store in the real
PostgreSQL (a schema of each test's own) and without one: mistakes answered in OpenAI's
envelope (and by the CLI in one line), the config's keys beside the stored ones across
reloads, and ids unique across both."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import GatewayThread, http
from tests.integration.test_key_store import CONFIG_KEY, admin, auth, chat, schema, sql

__all__ = ["schema"]  # (the fixture, shared)


@pytest.fixture
def gateway_with_store(fleet, schema):
    gw = GatewayThread({"backends": fleet.backends_config(), "auth": auth(schema)})
    yield gw
    gw.stop()


@pytest.mark.parametrize("body, status, param, says", [
    (b"{not json", 400, None, "not JSON"),
    (b"[1, 2]", 400, None, "expected a JSON object"),
    (b'{"tenant": "search"}', 400, "id", "Field required"),
    (b'{"id": "has space"}', 400, "id", "should match pattern"),
    (b'{"id": "a", "tenant": "nobody"}', 400, "tenant", "not in the config's auth.tenants"),
    (b'{"id": "a", "expires": "2030-01-01T00:00:00"}', 400, "expires", "time zone"),
    (b'{"id": "a", "models": "sim-model"}', 400, "models", "valid list"),
    (b'{"id": "a", "priority": "high"}', 400, "priority", "valid integer"),
    (b'{"id": "a", "limits": [1]}', 400, "limits", "valid dictionary"),
    (b'{"id": "a", "metadata": {"k": 1}}', 400, "metadata.k", "valid string"),
    (b'{"id": "a", "key": "wk-my-own-key-000000000000000"}', 400, "key", "Extra inputs"),
    (b'{"id": "config-key"}', 409, "id", "a key of the config file"),
])
def test_bad_bodies_are_answered_in_the_envelope(gateway_with_store, body, status, param,
                                                 says):
    code, _, answer = http("POST", f"{gateway_with_store.url}/admin/keys", body,
                           {"Content-Type": "application/json"})
    error = json.loads(answer)["error"]
    assert (code, error["param"]) == (status, param), error
    assert says in error["message"]


def test_bad_paths_and_methods_are_answered_in_the_envelope(gateway_with_store):
    url = gateway_with_store.url
    for method, path, status in [("GET", "/nobody", 404), ("POST", "/nobody/revoke", 404),
                                 ("POST", "/nobody/rotate", 404), ("POST", "/a/b/c", 404),
                                 ("POST", "/a/delete", 404), ("DELETE", "", 405),
                                 ("GET", "/a/revoke", 405), ("POST", "/a", 405),
                                 ("POST", "/config-key/revoke", 409)]:
        code, answer = admin(url, method, path)
        assert code == status and answer["error"]["message"], (method, path, answer)
    assert http("GET", f"{url}/admin/keysx")[0] == 404  # (not a key route)


def test_without_a_store_the_keys_come_from_the_config_file(fleet):
    gw = GatewayThread({"backends": fleet.backends_config(), "auth": {
        "mode": "required", "keys": [{"id": "config-key", "value": CONFIG_KEY}]}})
    try:
        status, listed = admin(gw.url, "GET", "")
        assert status == 200 and listed["store"] is None
        assert [k["id"] for k in listed["keys"]] == ["config-key"]
        assert CONFIG_KEY not in json.dumps(listed)
        assert admin(gw.url, "GET", "/config-key")[1]["source"] == "config"
        for path in ("", "/config-key/revoke", "/other/rotate"):
            status, error = admin(gw.url, "POST", path, {"id": "new"} if not path else None)
            assert status == 409 and error["error"]["type"] == "invalid_request_error"
            assert "config file" in error["error"]["message"]
        status, error = admin(gw.url, "GET", "/other")
        assert status == 404 and "auth.store is not configured" in error["error"]["message"]
        assert "keys" not in json.loads(http("GET", f"{gw.url}/ready")[2])
    finally:
        gw.stop()


def test_a_reload_swaps_the_config_keys_and_keeps_the_stored_ones(fleet, schema):
    config = {"backends": fleet.backends_config(), "auth": auth(schema)}
    gw = GatewayThread(config)
    try:
        stored = admin(gw.url, "POST", "", {"id": "stored", "tenant": "search"})[1]["key"]
        free = admin(gw.url, "POST", "", {"id": "free"})[1]["key"]
        assert chat(gw.url, stored) == 200 and chat(gw.url, CONFIG_KEY) == 200

        # The tenant's grant narrowed: its stored key follows it, at once.
        narrowed = auth(schema)
        narrowed["tenants"]["search"] = {"models": ["other-*"]}
        gw.reload({**config, "auth": narrowed})
        assert chat(gw.url, stored) == 403 and chat(gw.url, free) == 200

        # The tenant gone, its stored key is left out (refused, never widened); and a config
        # key that takes a stored key's id wins it.
        gone = auth(schema)
        del gone["tenants"]["search"]
        gone["keys"] = [{"id": "free", "value": CONFIG_KEY}]
        assert gw.reload({**config, "auth": gone}) == []
        assert chat(gw.url, stored) == 401 and chat(gw.url, free) == 401
        assert chat(gw.url, CONFIG_KEY) == 200
        listed = {k["id"] + "/" + k["source"]: k["state"]
                  for k in admin(gw.url, "GET", "")[1]["keys"]}
        assert listed == {"free/config": "active",
                          "free/store": "left out: its id is also a key of the config file, "
                                        "which wins",
                          "stored/store": "left out: its tenant 'search' is not in the "
                                          "config's auth.tenants"}
        ready = json.loads(http("GET", f"{gw.url}/ready")[2])["keys"]
        assert ready["left_out"] == 2  # (/ready is open to all: a count, no ids or tenants)

        gw.reload(config)  # back as it was: both back
        assert chat(gw.url, stored) == 200 and chat(gw.url, free) == 200
        moved = auth(schema)
        moved["store"]["schema"] = "elsewhere"
        assert gw.reload({**config, "auth": moved}) == ["auth.store"]
    finally:
        gw.stop()


def keys_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", "keys", *args], text=True,
                          capture_output=True, timeout=30)


def test_the_cli_manages_stored_keys_and_says_each_mistake_in_one_line(gateway_with_store,
                                                                        schema):
    url = gateway_with_store.url
    made = keys_cli("create", "cli-key", "--tenant", "search", "--model", "sim-*",
                    "--priority", "2", "--metadata", "owner=ops", "--limits", '{"rpm": 10}',
                    "--expires", "2099-01-01T00:00:00Z", "--url", url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.split("key: ", 1)[1].split()[0]
    assert chat(url, key) == 200

    listed = keys_cli("list", "--url", url)
    assert listed.returncode == 0 and "cli-key" in listed.stdout and key not in listed.stdout
    assert "key store: PostgreSQL, schema " + schema + ", up" in listed.stdout
    shown = keys_cli("show", "cli-key", "--url", url)
    assert '{"rpm": 10}' in shown.stdout and "owner" in shown.stdout

    rotated = keys_cli("rotate", "cli-key", "--url", url)
    new = rotated.stdout.split("key: ", 1)[1].split()[0]
    assert chat(url, key) == 401 and chat(url, new) == 200
    assert keys_cli("revoke", "cli-key", "--url", url).stdout.startswith("revoked cli-key")
    assert chat(url, new) == 401
    assert sql(f"SELECT revoked IS NOT NULL AS r FROM {schema}.api_keys")[0]["r"]

    for mistake, says in [
            (("create", "x", "--metadata", "novalue", "--url", url), "KEY=VALUE"),
            (("create", "x", "--limits", "{", "--url", url), "--limits is not JSON"),
            (("create", "x", "--tenant", "nobody", "--url", url), "answered 400: tenant"),
            (("create", "cli-key", "--url", url), "answered 409: the id 'cli-key' is taken"),
            (("revoke", "nobody", "--url", url), "answered 404: no key 'nobody'"),
            (("rotate", "cli-key", "--url", url), "is revoked"),
            (("show", "x", "--url", "http://127.0.0.1:9"), "cannot reach")]:
        result = keys_cli(*mistake)
        assert result.returncode == 2, (mistake, result.stdout)
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
            result.stderr
        assert "Traceback" not in result.stderr
