"""What browsers need: CORS for the configured origins (preflight answered by the gateway, the
allow line on results and on refusals alike), nothing for others; and the config's fixed
header lines on every answer, the backend's included, following a reload."""

from __future__ import annotations

from tests.harness import GatewayThread, http

PAGE = "https://chat.example.com"
BODY = b'{"model":"sim-model","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}'


def config(fleet, **extra) -> dict:
    return {"backends": fleet.backends_config(),
            "cors": {"allow_origins": [PAGE], "max_age": "5m"},
            "response_headers": {"Strict-Transport-Security": "max-age=31536000"},
            "auth": {"mode": "required",
                     "keys": [{"id": "page", "value": "wk-browser-0123456789"}]},
            **extra}


def test_cors_and_fixed_lines(fleet):
    gw = GatewayThread(config(fleet))
    chat = f"{gw.url}/v1/chat/completions"
    try:
        status, headers, _ = http("OPTIONS", chat, headers={
            "Origin": PAGE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert status == 200 and headers["access-control-allow-origin"] == PAGE
        assert "authorization" in headers["access-control-allow-headers"]
        assert headers["access-control-max-age"] == "300"
        asked = {"Origin": PAGE, "Content-Type": "application/json",
                 "Authorization": "Bearer wk-browser-0123456789"}
        status, headers, _ = http("POST", chat, BODY, asked)
        assert status == 200 and headers["access-control-allow-origin"] == PAGE
        assert "x-request-id" in headers["access-control-expose-headers"]
        assert headers["strict-transport-security"] == "max-age=31536000"  # (the backend's)
        for refused, wanted in (({**asked, "Authorization": "Bearer wrong-key-000000"}, 401),
                                ({**asked, "Content-Type": "text/plain"}, 415)):
            status, headers, _ = http("POST", chat, BODY, refused)
            assert status == wanted and headers["access-control-allow-origin"] == PAGE
        status, headers, _ = http("POST", chat, BODY, {**asked, "Origin": "https://evil.test"})
        assert status == 200 and "access-control-allow-origin" not in headers
        status, headers, _ = http("OPTIONS", chat, headers={"Origin": "https://evil.test"})
        assert "access-control-allow-origin" not in headers
        status, headers, _ = http("GET", f"{gw.url}/health")
        assert headers["strict-transport-security"] == "max-age=31536000"  # (the gateway's)
        gw.reload(config(fleet, response_headers={"X-Content-Type-Options": "nosniff"}))
        _, headers, _ = http("POST", chat, BODY, asked)
        assert headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in headers
    finally:
        gw.stop()


def test_without_cors_a_preflight_is_not_answered_as_one(fleet):
    gw = GatewayThread({"backends": fleet.backends_config()})
    try:
        status, headers, _ = http("OPTIONS", f"{gw.url}/v1/chat/completions",
                                  headers={"Origin": PAGE})
        assert status == 405 and "access-control-allow-origin" not in headers
    finally:
        gw.stop()
