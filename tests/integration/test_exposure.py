"""What a client learns of the backends: by default, nothing (`expose_upstream: false`): no
`X-Upstream-Addr`, no backend `Server` header, errors that say "the backend" without its
name or address; the records keep all of it."""

from __future__ import annotations

import json
import threading

from tests.harness import GatewayThread, SimProcess, http, serve, wait_until
from warden.audit.reader import read_records, record_files, requests

JSON = {"Content-Type": "application/json"}
BODY = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                   "max_tokens": 2}).encode()
STREAM = json.dumps({"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                     "max_tokens": 2, "stream": True}).encode()


def test_warden_serve_shows_no_backend_by_default(fleet, tmp_path):
    backends = "".join(f"  - {{name: node-{i}, url: '{fleet.url(i)}'}}\n"
                       for i in range(fleet.nodes))
    proc, url = serve(f"backends:\n{backends}", tmp_path)
    try:
        for body in (BODY, STREAM):
            status, headers, reply = http("POST", f"{url}/v1/chat/completions", body, JSON)
            assert status == 200 and reply
            assert "x-upstream-addr" not in headers and "server" not in headers
            assert headers["x-upstream-status"] == "200" and headers["x-request-id"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_exposed_responses_name_the_backend(gateway, fleet):
    """`expose_upstream: true` (the test harness's default): as before."""
    status, headers, _ = http("POST", f"{gateway.url}/v1/chat/completions", BODY, JSON)
    assert status == 200 and headers["server"] == "uvicorn"
    assert 0 <= fleet.node_of(headers) < fleet.nodes


def test_errors_do_not_name_the_backend_but_records_do(tmp_path):
    sim = SimProcess(2, "--ttft", "5")
    # Nothing but a request finds the node dead (no health checks, no discovery meanwhile).
    gw = GatewayThread({"backends": [{"name": "node-0", "url": sim.url(0)}],
                        "expose_upstream": False, "scrape": {"enabled": False},
                        "health": {"active": {"enabled": False}},
                        "discovery": {"interval": "1h"},
                        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms"}})
    address = sim.url(0).removeprefix("http://")
    try:
        answers: list[tuple[int, bytes]] = []
        thread = threading.Thread(target=lambda: answers.append(http(
            "POST", f"{gw.url}/v1/chat/completions", BODY, {**JSON, "X-Request-Id": "cut"})
            [::2]))
        thread.start()
        wait_until(lambda: gw.in_flight() == 1, what="the request in flight")
        sim.kill_node(0, via=1)  # before its first byte: a 502
        thread.join(timeout=10)
        # Down now: the next one gets a 503 (it could not connect). (Another body: the one
        # in flight when the node died is held by the quarantine.)
        answers.append(http("POST", f"{gw.url}/v1/chat/completions", BODY.replace(b'"x"', b'"y"'),
                            {**JSON, "X-Request-Id": "down"})[::2])
        assert [status for status, _ in answers] == [502, 503]
        for _, body in answers:
            message = json.loads(body)["error"]["message"]
            assert "node-0" not in message and address.split(":")[1] not in message, message
    finally:
        gw.stop()
        sim.stop()
    records = {r.id: r for r in requests(read_records(record_files(tmp_path)))}
    assert "node-0" in records["cut"].get("error")
    assert address in records["down"].get("error")
