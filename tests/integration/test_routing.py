"""Routing on live signals, health checks, the breaker and drain, against `warden sim`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections import Counter

import openai
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http, wait_until

MESSAGES = [{"role": "user", "content": "hello"}]


def backends(gw: GatewayThread) -> dict[str, dict]:
    _, _, body = http("GET", f"{gw.url}/admin/backends")
    return {b["name"]: b for b in json.loads(body)["backends"]}


def fault(sim: SimProcess, node: int, mode: str, value: int = 0) -> None:
    via = (node + 1) % sim.nodes
    status, _, body = http("POST", f"{sim.url(via)}/sim/fault?node={node}&mode={mode}"
                                   f"&value={value}")
    assert status == 200, body


def nodes_used(sim: SimProcess, client: OpenAI, n: int, **extra) -> Counter[int]:
    used: Counter[int] = Counter()
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model="sim-model", messages=MESSAGES, max_tokens=1, **extra)
        used[sim.node_of(raw.headers)] += 1
    return used


def hold_streams(url: str, n: int) -> list[socket.socket]:
    """`n` long streams opened straight on a node (not through the gateway); closing a
    socket aborts its request."""
    body = json.dumps({"model": "sim-model", "stream": True, "messages": MESSAGES}).encode()
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        sockets.append(s)
    return sockets


def test_load_aware_routes_around_an_engine_that_is_queueing():
    """The scraper reads the sim's real /metrics: a node whose engine queues (its two
    sequence slots taken by streams the gateway never saw) gets no new requests, though the
    gateway's own in-flight counts are equal."""
    sim = SimProcess(2, "--max-num-seqs", "2", "--token-delay", "0.05", "--output-tokens",
                     "400")
    gw = GatewayThread({"backends": sim.backends_config(), "scrape": {"interval": "100ms"},
                        "routing": {"policy": "load_aware"}})
    held = hold_streams(sim.url(0), 4)
    try:
        wait_until(lambda: (backends(gw)["node-0"]["load"] or {}).get("waiting", 0) >= 2,
                   what="the gateway to see node-0's queue")
        assert gw.metric("warden_backend_waiting", 'backend="node-0"') >= 2
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        assert nodes_used(sim, client, 10) == {1: 10}
        scores = {name: b["routing"]["score"] for name, b in backends(gw).items()}
        assert scores["node-0"] < scores["node-1"]
    finally:
        for s in held:
            s.close()
        gw.stop()
        sim.stop()


def test_stale_signals_are_reported_and_routing_carries_on_without_them():
    sim = SimProcess(2)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "scrape": {"interval": "100ms", "stale_after": "300ms"}})
    try:
        wait_until(lambda: all(b["load"] for b in backends(gw).values()),
                   what="a first scrape of both")
        fault(sim, 0, "metrics_down")
        wait_until(lambda: gw.metric("warden_backend_signals_fresh", 'backend="node-0"') == 0
                   and gw.metric("warden_backend_signals_fresh", 'backend="node-1"') == 1,
                   what="node-0's signals to go stale")
        node0 = backends(gw)["node-0"]
        assert node0["routing"]["fresh"] is False and node0["routing"]["degraded"] is True
        assert node0["routing"]["scores"]["kv_cache"] is None   # not read as 0
        assert "503" in node0["scrape_error"]
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        used = nodes_used(sim, client, 20)
        assert set(used) == {0, 1}  # rated on in-flight alone, it still takes its share
        assert gw.metric("warden_routing_degraded_picks_total") >= 1
        fault(sim, 0, "recover")
        wait_until(lambda: gw.metric("warden_backend_signals_fresh",
                                     'backend="node-0"') == 1, what="fresh again")
    finally:
        gw.stop()
        sim.stop()


def test_the_breaker_opens_on_5xx_probes_and_closes_and_a_4xx_never_counts():
    sim = SimProcess(2)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "routing": {"policy": "round_robin"},
                        "health": {"active": {"enabled": False}, "passive": {"max_fails": 0},
                                   "breaker": {"failures": 3, "open_for": "300ms",
                                               "probes": 1}}})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        # A client's mistakes, answered 400 by the engine itself: not the backend's fault.
        for _ in range(8):
            status, _, _ = http("POST", f"{gw.url}/v1/chat/completions", json.dumps(
                {"model": "sim-model", "messages": MESSAGES, "max_tokens": 10**6}).encode(),
                {"Content-Type": "application/json"})
            assert status == 400
        assert all(b["breaker"]["state"] == "closed" and b["failures"] == 0
                   for b in backends(gw).values())
        fault(sim, 0, "errors", 3)
        statuses = Counter()
        for _ in range(6):  # round robin: node-0 gets three of them, all 500
            try:
                client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                               max_tokens=1)
                statuses["ok"] += 1
            except openai.APIStatusError as e:
                statuses[e.status_code] += 1
        assert statuses == {"ok": 3, 500: 3}
        node0 = backends(gw)["node-0"]
        assert node0["state"] == "breaker_open" and node0["breaker"]["trips"] == 1
        assert gw.metric("warden_backend_breaker_state", 'backend="node-0"') == 2
        assert nodes_used(sim, client, 6) == {1: 6}  # open: nothing for node-0
        # After open_for, one probe goes through; it succeeds (the errors are used up) and
        # closes the breaker: node-0 is back in rotation.
        wait_until(lambda: 0 in nodes_used(sim, client, 2), what="a probe to node-0")
        assert backends(gw)["node-0"]["breaker"]["state"] == "closed"
        assert set(nodes_used(sim, client, 4)) == {0, 1}
    finally:
        gw.stop()
        sim.stop()


def out_of_rotation(gw: GatewayThread, sim: SimProcess, error: str) -> None:
    """node-0 turns unhealthy, its last error saying `error`, and gets no more traffic."""
    wait_until(lambda: backends(gw)["node-0"]["state"] == "unhealthy",
               what="node-0 unhealthy")
    assert error in backends(gw)["node-0"]["last_error"]
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    assert nodes_used(sim, client, 4) == {1: 4}


def incidents_written(gw: GatewayThread) -> list[str]:
    """How each incident so far was detected (the open ones are written now)."""
    incidents = gw.gateway.incidents
    gw.call(incidents.close_all)
    return [json.loads(p.read_text())["detected_by"]
            for p in (incidents.directory / "incidents").glob("incident-*.json")]


def test_a_failed_health_check_takes_a_backend_out_and_opens_an_incident():
    sim = SimProcess(2, "--exit-after", "60", "--restart-after", "60")
    gw = GatewayThread({"backends": sim.backends_config(),
                        "health": {"active": {"interval": "100ms", "unhealthy_after": 2}}})
    try:
        fault(sim, 0, "crash")  # engine dead: /health answers 503, the server stays up
        out_of_rotation(gw, sim, "health check")
        assert "node-0" in gw.gateway.incidents.down
        detected = incidents_written(gw)
        assert any(d.startswith("health check failed") for d in detected), detected
        sim.kill_node(0)    # the supervisor's restart, now
        sim.revive_node(0)
        wait_until(lambda: backends(gw)["node-0"]["state"] == "ready", what="healthy again")
    finally:
        gw.stop()
        sim.stop()


def test_a_slow_health_check_takes_a_backend_out_but_is_no_death():
    """/health answering after its deadline (an API server too busy to answer in time) takes
    the backend out of rotation, but opens no incident: that would quarantine the requests
    in flight on a live engine. It comes back when /health answers in time again."""
    sim = SimProcess(2)
    gw = GatewayThread({"backends": sim.backends_config(), "health": {"active": {
        "interval": "100ms", "timeout": "200ms", "unhealthy_after": 2}}})
    try:
        fault(sim, 0, "health_slow", 2)
        out_of_rotation(gw, sim, "no answer within")
        assert "node-0" not in gw.gateway.incidents.down
        assert incidents_written(gw) == []
        fault(sim, 0, "recover")
        wait_until(lambda: backends(gw)["node-0"]["state"] == "ready", timeout=15,
                   what="healthy again")
    finally:
        gw.stop()
        sim.stop()


def test_drain_lets_streams_finish_and_sends_nothing_new_then_enable():
    sim = SimProcess(2, "--token-delay", "0.02", "--output-tokens", "40")
    gw = GatewayThread({"backends": sim.backends_config(),
                        "routing": {"policy": "round_robin"}})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_streaming_response.create(
            model="sim-model", messages=MESSAGES, stream=True)
        response = raw.__enter__()
        name = f"node-{sim.node_of(response.headers)}"
        wait_until(lambda: backends(gw)[name]["in_flight"] == 1, what="the stream in flight")
        drained = subprocess.run(
            [sys.executable, "-m", "warden", "backends", "drain", name, "--url", gw.url],
            capture_output=True, text=True, timeout=30)
        assert drained.returncode == 0 and "draining" in drained.stdout, drained.stderr
        others = nodes_used(sim, client, 6)
        assert f"node-{next(iter(others))}" != name and len(others) == 1
        chunks = list(response.parse())   # the stream on the drained node runs to its end
        response.close()
        finished = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert len(chunks) > 5 and finished[-1] in ("stop", "length")
        listing = subprocess.run(
            [sys.executable, "-m", "warden", "backends", "list", "--url", gw.url],
            capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0 and "draining" in listing.stdout
        status, _, _ = http("POST", f"{gw.url}/admin/backends/{name}/enable")
        assert status == 200
        assert len(nodes_used(sim, client, 4)) == 2
        assert http("POST", f"{gw.url}/admin/backends/nope/drain")[0] == 404
    finally:
        gw.stop()
        sim.stop()


def test_concurrent_burst_spreads_across_equal_nodes():
    """Between two scrapes, the gateway's own in-flight requests count: a burst of
    concurrent streams does not pile onto the node that looked idlest at the last scrape."""
    sim = SimProcess(3, "--token-delay", "0.02", "--output-tokens", "2000")
    gw = GatewayThread({"backends": sim.backends_config(), "scrape": {"interval": "10s"}})
    try:
        wait_until(lambda: all(b["load"] for b in backends(gw).values()), what="a scrape")
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        used: Counter[int] = Counter()
        lock = threading.Lock()
        all_in_flight = threading.Barrier(13)
        done = threading.Event()

        def one() -> None:
            # Each stream is held open (it would last 40 s) until all 12 are in flight and
            # counted; then the client leaves.
            with client.chat.completions.with_streaming_response.create(
                    model="sim-model", messages=MESSAGES, stream=True) as response:
                with lock:
                    used[sim.node_of(response.headers)] += 1
                all_in_flight.wait(timeout=60)
                done.wait(timeout=60)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        all_in_flight.wait(timeout=60)
        assert gw.in_flight() == 12
        done.set()
        for t in threads:
            t.join()
        assert sum(used.values()) == 12 and max(used.values()) <= 6, used
    finally:
        gw.stop()
        sim.stop()


def test_graceful_shutdown_refuses_new_connections_and_lets_streams_finish():
    sim = SimProcess(1, "--token-delay", "0.02", "--output-tokens", "40")
    gw = GatewayThread({"backends": sim.backends_config()})
    stopping = None
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        response = client.chat.completions.with_streaming_response.create(
            model="sim-model", messages=MESSAGES, stream=True).__enter__()
        wait_until(lambda: gw.in_flight() == 1, what="the stream in flight")
        port = gw.gateway.port
        stopping = gw.call(lambda: asyncio.ensure_future(gw.gateway.stop(grace=30)))

        def refused() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) != 0

        wait_until(refused, what="the listener closed")
        chunks = list(response.parse())
        response.close()
        finished = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert len(chunks) > 5 and finished[-1] in ("stop", "length")
        wait_until(stopping.done, what="the gateway stopped once the stream ended")
        assert stopping.exception() is None
    finally:
        gw.stop(gateway_stopped=stopping is not None and stopping.done())
        sim.stop()
