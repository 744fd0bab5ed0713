"""A mixed fleet through a real gateway: one simulated vLLM 0.24 engine decodes
speculatively (its /metrics has the vllm:spec_decode_* counters), the other does not. The
gateway learns it from the scrape, sends structured outputs only to the other engine, plain
requests to both, shows what it learned in GET /admin/backends, and refuses to forward the
LoRA adapter endpoints."""

from __future__ import annotations

import json

from tests.harness import GatewayThread, SimProcess, http, wait_until

JSON = {"Content-Type": "application/json"}
FLAGS = ("--vllm-version", "0.24.0", "--no-crash-triggers", "--model", "m", "--token-delay",
         "0", "--output-tokens", "2")


def _chat(**extra) -> bytes:
    return json.dumps({"model": "m", "max_tokens": 2,
                       "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


def test_structured_outputs_avoid_the_backend_learned_to_be_speculative():
    drafting = SimProcess(1, "--speculative-decoding", *FLAGS)
    plain = SimProcess(1, *FLAGS)
    gw = GatewayThread({"backends": [{"name": "drafting", "url": drafting.url(0)},
                                     {"name": "plain", "url": plain.url(0)}],
                        "routing": {"policy": "round_robin"}})
    try:
        backends = gw.call(lambda: {b.name: b for b in gw.gateway.backends})
        wait_until(lambda: gw.call(lambda: backends["drafting"].deployment.speculative_decoding),
                   timeout=20, what="the gateway to learn drafting decodes speculatively")
        assert gw.call(lambda: backends["plain"].deployment.speculative_decoding) is None
        plain_addr = plain.url(0).removeprefix("http://")
        seen = set()
        for _ in range(4):
            status, headers, body = http("POST", f"{gw.url}/v1/chat/completions",
                                         _chat(response_format={"type": "json_object"}), JSON)
            assert status == 200, body
            assert headers["x-upstream-addr"] == plain_addr
            status, headers, body = http("POST", f"{gw.url}/v1/chat/completions", _chat(),
                                         JSON)
            assert status == 200, body
            seen.add(headers["x-upstream-addr"])
        assert len(seen) == 2  # plain text still goes to both
        assert gw.metric("warden_guard_decisions_total",
                         'action="route",mode="enforce",rule="so-spec-decode-route"') == 4

        _, _, body = http("GET", f"{gw.url}/admin/backends")
        deployment = {b["name"]: b["deployment"] for b in json.loads(body)["backends"]}
        assert deployment["drafting"]["speculative_decoding"] == {"value": True,
                                                                  "from": "learned"}
        assert deployment["plain"]["speculative_decoding"] == {"value": None,
                                                               "from": "unknown"}

        status, _, body = http("POST", f"{gw.url}/v1/load_lora_adapter",
                               json.dumps({"lora_name": "x", "lora_path": "/tmp/x"}).encode(),
                               JSON)
        error = json.loads(body)["error"]
        assert status == 403 and error["code"] == "forbidden", body
        assert "lora-admin-block" in error["message"]
    finally:
        gw.stop()
        drafting.stop()
        plain.stop()
