"""Budgets through the gateway, as OpenAI's SDK meets them (one gateway, the memory store):
a key served until its token budget is spent, then 429 `insufficient_quota` that the SDK does
not retry; a tenant's cost budget counted from the prices, shown by /admin/keys and /metrics;
a model without a price refused; a stream cut mid-way charged by what it relayed; a stored
key's budget made by `warden keys create --budget`, kept in PostgreSQL."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from tests.harness import GatewayThread, http, wait_until
from tests.integration.test_key_admin import keys_cli
from tests.integration.test_key_store import auth, chat, schema, sql

__all__ = ["schema"]  # (the fixture, shared)

KEY = "wk-budget-test-key-000000001"
MESSAGES = [{"role": "user", "content": "Tell me about the fleet"}]
PRICES = {"sim-*": {"input": 2.0, "output": 10.0}}


def budgeted(fleet, key_limits: dict | None = None, tenant_limits: dict | None = None,
             prices: dict | None = None) -> dict:
    return {"backends": fleet.backends_config(),
            "auth": {"mode": "required", "tenants": {"t": {"limits": tenant_limits}},
                     "keys": [{"id": "k", "value": KEY, "tenant": "t",
                               "limits": key_limits}]},
            "rate_limits": {"prices": prices or {}}}


def sdk(gw: GatewayThread, retries: int = 0) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=retries)


def listing(gw: GatewayThread) -> dict:
    status, _, body = http("GET", f"{gw.url}/admin/keys")
    assert status == 200, body
    return json.loads(body)


def test_a_spent_token_budget_is_insufficient_quota_and_the_sdk_does_not_retry(fleet):
    gw = GatewayThread(budgeted(fleet, {"budget": {"tokens": 200, "per": "day"}}))
    client = sdk(gw, retries=5)   # (the SDK retries 429s: not this one)
    try:
        used, refused = 0, None
        for _ in range(50):
            try:
                reply = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                       max_tokens=5)
            except openai.RateLimitError as error:
                refused = error
                break
            used += reply.usage.total_tokens
        assert refused is not None, "the budget was never spent"
        assert 0 < used <= 200
        assert refused.body["code"] == "insufficient_quota"
        assert refused.body["type"] == "insufficient_quota"
        headers = refused.response.headers
        assert headers["x-should-retry"] == "false" and "retry-after" not in headers
        assert gw.metric("warden_requests_total", 'status="429"') == 1  # no retry came
        assert gw.metric("warden_limit_refusals_total",
                         'limit="budget",subject="key"') == 1
        entry = next(k for k in listing(gw)["keys"] if k["id"] == "k")
        assert entry["budget"]["spent"] == used and entry["budget"]["limit"] == 200
        assert entry["budget"]["kind"] == "tokens" and entry["budget"]["source"] == "store"
        assert entry["budget"]["resets_at"].endswith("T00:00:00Z")
    finally:
        gw.stop()


def test_a_tenants_cost_budget_is_counted_from_the_prices(fleet):
    gw = GatewayThread(budgeted(fleet, tenant_limits={"budget": {"cost": 1.0, "per": "month"}},
                                prices=PRICES))
    try:
        reply = sdk(gw).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                max_tokens=5)
        usage = reply.usage
        cost = (usage.prompt_tokens * 2.0 + usage.completion_tokens * 10.0) / 1e6
        shown = listing(gw)
        budget = shown["tenants"]["t"]["budget"]
        assert budget["kind"] == "cost" and budget["limit"] == 1.0
        assert budget["spent"] == pytest.approx(cost, abs=1e-6)
        assert shown["tenants"]["t"]["limits"]["budget"] == {"cost": 1.0, "per": "month"}
        assert next(k for k in shown["keys"] if k["id"] == "k")["budget"] is None
        assert gw.metric("warden_budget_spent", 'tenant="t"') == pytest.approx(cost, abs=1e-6)
        assert gw.metric("warden_budget_limit", 'kind="cost",per="month",tenant="t"') == 1.0
    finally:
        gw.stop()


def test_a_cost_budget_refuses_a_model_without_a_price_and_a_request_past_it(fleet):
    gw = GatewayThread(budgeted(fleet, tenant_limits={"budget": {"cost": 0.001, "per": "day"}},
                                prices={"other-*": {"input": 1, "output": 1}}))
    try:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            sdk(gw).chat.completions.create(model="sim-model", messages=MESSAGES)
        assert refused.value.body["code"] == "model_not_priced"
        assert refused.value.body["param"] == "model"
    finally:
        gw.stop()
    gw = GatewayThread(budgeted(fleet, tenant_limits={"budget": {"cost": 0.001, "per": "day"}},
                                prices=PRICES))
    try:   # 1000 millionths: 100 output tokens at 10 a million cost 1000 with the prompt
        with pytest.raises(openai.RateLimitError) as refused:
            sdk(gw, retries=3).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                       max_tokens=100)
        assert refused.value.body["code"] == "insufficient_quota"
        assert gw.metric("warden_limit_refusals_total",
                         'limit="budget",subject="tenant"') == 1
        assert sdk(gw).chat.completions.create(model="sim-model", messages=MESSAGES,
                                               max_tokens=5).choices
    finally:
        gw.stop()


def test_a_stream_cut_mid_way_is_charged_by_what_it_relayed(slow_fleet):
    gw = GatewayThread(budgeted(slow_fleet, {"budget": {"tokens": 100_000, "per": "day"}}))
    client = sdk(gw)
    try:
        stream = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                max_tokens=500, stream=True)
        for n, _ in enumerate(stream):
            if n == 3:
                break
        during = next(k for k in listing(gw)["keys"] if k["id"] == "k")["budget"]["spent"]
        assert during >= 500   # (reserved while it runs)
        stream.close()
        wait_until(lambda: gw.in_flight() == 0, what="the cut stream to end")
        spent = next(k for k in listing(gw)["keys"] if k["id"] == "k")["budget"]["spent"]
        assert 3 <= spent < 100   # its prompt's estimate and the events relayed
    finally:
        gw.stop()


def test_a_stored_keys_budget_from_the_cli_is_kept_in_postgresql_and_holds(fleet, schema):
    gw = GatewayThread({"backends": fleet.backends_config(), "auth": auth(schema)})
    url = gw.url
    try:
        made = keys_cli("create", "b-key", "--tenant", "search", "--budget", "tokens:60/day",
                        "--limits", '{"rpm": 100}', "--url", url)
        assert made.returncode == 0, made.stderr
        key = made.stdout.split("key: ", 1)[1].split()[0]
        row = sql(f"SELECT limits FROM {schema}.api_keys WHERE id = 'b-key'")[0]
        assert json.loads(row["limits"]) == {"rpm": 100, "budget": {"tokens": 60, "per": "day"}}
        statuses = [chat(url, key) for _ in range(40)]
        assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) == {200, 429}
        shown = json.loads(keys_cli("show", "b-key", "--json", "--url", url).stdout)
        assert shown["budget"]["limit"] == 60 and 0 < shown["budget"]["spent"] <= 60
        listed = keys_cli("list", "--url", url).stdout
        assert f"budget {shown['budget']['spent']:g}/60 tokens a day (resets" in listed
        for mistake, says in [
                (("--budget", "tokens:-5/day"), "--budget takes tokens:N/day"),
                (("--budget", "tokens:2.5/day"), "--budget takes tokens:N/day"),
                (("--budget", "cost:5/week"), "--budget takes tokens:N/day"),
                (("--budget", "tokens:99999999999999999/day"),
                 "answered 400: limits.budget.tokens"),
                (("--limits", '{"budget": {"cost": 5, "tokens": 5, "per": "day"}}'),
                 "exactly one of tokens, cost")]:
            result = keys_cli("create", "x", *mistake, "--url", url)
            assert result.returncode == 2 and says in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    finally:
        gw.stop()
