"""The admin page in a real browser (Debian's Chromium, driven by Playwright) against a gateway
and `warden sim`: it shows the fleet, its buttons do what the admin API then reports (drain,
abort, lift), an engine's death shows up with its suspects, a hostile model name stays text,
and the browser logs no error (a failed load, a script error, a blocked inline script)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness import GatewayThread, SimProcess, http, stream_error, wait_until

CHROMIUM = "/usr/bin/chromium"  # Debian's (.ci/run installs it; never `playwright install`)
HOSTILE = '<img src=x onerror="window.pwned=1">'  # a model name some client may send
JSON = {"Content-Type": "application/json"}
POISON = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
          "structured_outputs": {}}  # the sim's crash trigger (a vLLM 0.11 engine's death)
ADMIN = "wk-admin-key-page-0000000000000000000"
CLIENT_KEY = "wk-client-key-page-000000000000000000"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def fleet(tmp_path) -> Iterator[tuple[SimProcess, GatewayThread]]:
    """Slow streams (one token every 20 ms), nodes that stay dead once crashed, the rules
    only watching (so the crash trigger reaches an engine) and the quarantine enforcing."""
    sim = SimProcess(3, "--token-delay", "0.02", "--output-tokens", "500",
                     "--restart-after", "-1", "--model", "sim-model", "--model", HOSTILE)
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"},
                        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms",
                                     "min_free_disk": 0}})
    yield sim, gw
    gw.stop()
    sim.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page whose console errors and uncaught exceptions a test asserts are none."""
    context = browser.new_context()
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def api(gw: GatewayThread, path: str) -> dict:
    status, _, body = http("GET", f"{gw.url}{path}")
    assert status == 200, body
    return json.loads(body)


def backend_state(gw: GatewayThread, name: str) -> str:
    return next(b["state"] for b in api(gw, "/admin/backends")["backends"]
                if b["name"] == name)


def test_the_page_shows_the_fleet_and_a_drain_click_drains(fleet, page):
    _, gw = fleet
    response = page.goto(f"{gw.url}/admin/")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    page.wait_for_selector('#fleet tr[data-backend="node-2"] [data-state="ready"]')
    assert page.locator("#fleet tbody tr").count() == 3

    page.click('#fleet button[data-backend="node-1"][data-action="drain"]')
    wait_until(lambda: backend_state(gw, "node-1") == "draining", what="node-1 draining")
    page.wait_for_selector('#fleet tr[data-backend="node-1"] [data-state="draining"]')
    page.click('#fleet button[data-backend="node-1"][data-action="enable"]')
    wait_until(lambda: backend_state(gw, "node-1") == "ready", what="node-1 back")

    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    for _ in range(3):
        client.chat.completions.create(model="sim-model", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    expect(page.locator("#errors")).to_contain_text("404 1")
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_abort_click_ends_a_stream_and_a_hostile_model_name_stays_text(fleet, page):
    sim, gw = fleet
    page.goto(f"{gw.url}/admin/")
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=HOSTILE, stream=True, messages=[{"role": "user", "content": "long"}],
        extra_headers={"X-Request-Id": "long-stream"})
    ended: list[openai.APIError] = []
    reader = threading.Thread(target=lambda: ended.append(stream_error(stream)))
    reader.start()
    row = page.wait_for_selector('#requests tr[data-request="long-stream"]')
    assert row is not None
    assert HOSTILE in row.inner_text()  # shown as the text it is
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img").count() == 0
    wait_until(lambda: any(r["events"] for r in api(gw, "/admin/requests")["requests"]),
               what="the stream under way")

    page.click('button[data-abort="long-stream"]')
    reader.join(timeout=10)
    assert ended and "aborted by an operator" in str(ended[0])
    gw.wait_idle()
    wait_until(lambda: sum(sim.metric(n, "vllm:num_requests_running") for n in range(3)) == 0,
               what="the engine let the aborted request go")
    page.wait_for_selector('#requests tr[data-request="long-stream"]', state="detached")
    assert api(gw, "/admin/stats")["errors"].get("cancelled") == 1
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_engine_death_shows_its_suspects_and_a_lift_lifts(fleet, page):
    sim, gw = fleet
    page.goto(f"{gw.url}/admin/")
    page.wait_for_selector("#incidents p")  # (none yet)
    for n in range(4):
        status, _, _ = http("POST", f"{gw.url}/v1/chat/completions", json.dumps({
            "model": "sim-model", "max_tokens": 2, "logprobs": True,
            "messages": [{"role": "user", "content": f"plain {n}"}]}).encode(),
            {**JSON, "X-Request-Id": f"plain-{n}"})
        assert status == 200
    status, headers, _ = http("POST", f"{gw.url}/v1/chat/completions",
                              json.dumps(POISON).encode(),
                              {**JSON, "X-Request-Id": "the-poison"})
    assert status == 500
    dead = f"node-{sim.node_of(headers)}"

    incident = page.wait_for_selector('.incident:has(tr[data-suspect="the-poison"])',
                                      timeout=20_000)
    assert incident is not None and dead in incident.inner_text()
    first = incident.query_selector("table.suspects tbody tr")
    assert first is not None and first.get_attribute("data-suspect") == "the-poison"
    assert "structured_outputs with no usable constraint" in first.inner_text()
    page.wait_for_selector(f'#fleet tr[data-backend="{dead}"] [data-state="unhealthy"], '
                           f'#fleet tr[data-backend="{dead}"] [data-state^="breaker"], '
                           f'#fleet tr[data-backend="{dead}"] [data-state="ejected"], '
                           f'#fleet tr[data-backend="{dead}"] [data-state="unreachable"]',
                           timeout=20_000)

    link = page.wait_for_selector(".incident a[download]", timeout=20_000)
    assert link is not None
    status, headers, body = http("GET", gw.url + (link.get_attribute("href") or ""))
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert json.loads(body)["suspects"][0]["id"] == "the-poison"

    held = page.wait_for_selector("#quarantine tr[data-fingerprint]")
    assert held is not None
    fingerprint = held.get_attribute("data-fingerprint")
    assert fingerprint in {e["fingerprint"] for e in api(gw, "/admin/quarantine")["quarantine"]}
    page.click(f'#quarantine button[data-lift="{fingerprint}"]')
    wait_until(lambda: fingerprint not in {e["fingerprint"] for e in
                                           api(gw, "/admin/quarantine")["quarantine"]},
               what="the entry lifted")
    page.wait_for_selector(f'#quarantine tr[data-fingerprint="{fingerprint}"]',
                           state="detached")
    assert page.errors == []  # type: ignore[attr-defined]


def test_with_admin_keys_the_page_asks_for_one_and_sends_it(browser):
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "auth": {"mode": "off", "admin_keys": [{"id": "ops", "value": ADMIN}]}})
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{gw.url}/admin/")  # the files need no key: they hold no data
        page.wait_for_selector("#login:not([hidden])")
        assert page.locator("#main").is_hidden()
        status, _, _ = http("GET", f"{gw.url}/admin/backends")
        assert status == 401  # the API still does
        page.fill("#key", "wrong")
        page.click("#login button")
        expect(page.locator("#login-error")).to_contain_text("refused")
        page.fill("#key", ADMIN)
        page.click("#login button")
        page.wait_for_selector('#fleet tr[data-backend="node-0"]')
        assert page.evaluate("sessionStorage.getItem('warden-admin-key')") == ADMIN
    finally:
        context.close()
        gw.stop()
        sim.stop()


def test_keys_and_tenants_show_their_limits_and_what_is_spent_of_their_budgets(browser):
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config(), "auth": {
        "mode": "required",
        "tenants": {"search": {"limits": {"rpm": 600,
                                          "budget": {"tokens": 100000, "per": "day"}}}},
        "keys": [{"id": "search-web", "value": CLIENT_KEY, "tenant": "search",
                  "limits": {"rpm": 60}}]}})
    context = browser.new_context()
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT_KEY, max_retries=0)
        client.chat.completions.create(model="sim-model", max_tokens=5,
                                       messages=[{"role": "user", "content": "hi"}])
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{gw.url}/admin/")
        key_row = page.locator('#keys tr[data-key="search-web"]')
        expect(key_row).to_contain_text("rpm 60")
        tenant_row = page.locator('#keys tr[data-tenant="search"]')
        expect(tenant_row).to_contain_text("rpm 600")
        # The tenant's budget, as the limits counted the request just answered.
        spent = api(gw, "/admin/keys")["tenants"]["search"]["budget"]["spent"]
        assert spent > 0
        expect(tenant_row).to_contain_text(f"budget {spent} / 100000 tokens a day")
        assert errors == []
    finally:
        context.close()
        gw.stop()
        sim.stop()
