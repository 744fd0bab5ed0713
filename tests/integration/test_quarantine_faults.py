"""The quarantine under faults, end to end: a node killed from outside does not turn into an
outage (its innocent requests are probed and cleared), a real poison still kills one engine
only and is then blocked, every death is an incident and a node down at start is none, and a
Redis store that is down or hangs neither opens the gate silently nor stops the gateway."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import threading
import time

import openai
import redis

from tests.harness import GatewayThread, SimProcess, http, wait_until
from tests.integration.test_quarantine import JSON, MESSAGES, POISON, alive
from tests.tcp_proxy import FORWARD, HANG, REFUSE, TcpProxy
from tests.unit.test_quarantine import REDIS, prefix  # noqa: F401 - a fixture
from warden.audit.report import incident_files

FAST_HEALTH = {"active": {"interval": "100ms", "timeout": "1s"}}


def send(url: str, body: dict, request_id: str, timeout: float = 30) -> tuple[int, bytes]:
    status, _, answer = http("POST", f"{url}/v1/chat/completions", json.dumps(body).encode(),
                             {**JSON, "X-Request-Id": request_id}, timeout=timeout)
    return status, answer


def test_after_a_plain_kill_later_requests_succeed(tmp_path):
    """A node killed from outside (no poison) with requests in flight: every body that was
    on it is watched, probed on one live node and cleared; the traffic that follows, the
    SDK's own retries among it, gets through (>= 99%, each within 10 s)."""
    sim = SimProcess(3, "--token-delay", "0.01", "--output-tokens", "20")
    gw = GatewayThread({"backends": sim.backends_config(), "health": FAST_HEALTH,
                        "routing": {"policy": "round_robin"}})
    bodies = [f"the same prompt, {n}" for n in range(4)]  # a load test reuses its prompts
    results: list[tuple[float, float, str | None]] = []   # (started, took, error)
    stop = threading.Event()

    def client_loop(n: int) -> None:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=2)
        i = n
        while not stop.is_set():
            started, error = time.monotonic(), None
            try:
                client.chat.completions.create(model="sim-model", messages=[
                    {"role": "user", "content": bodies[i % len(bodies)]}])
            except openai.APIError as e:
                error = repr(e)
            results.append((started, time.monotonic() - started, error))
            i += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(results) >= 40, what="traffic before the kill")
        wait_until(lambda: gw.in_flight() >= 4, what="requests in flight")
        killed_at = time.monotonic()
        sim.kill_node(1)
        wait_until(lambda: len([r for r in results if r[0] > killed_at]) >= 200, timeout=30,
                   what="200 requests after the kill")
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        later = [r for r in results if r[0] > killed_at]
        good = [r for r in later if r[2] is None and r[1] <= 10.0]
        assert len(good) >= 0.99 * len(later), [r[2] for r in later if r[2]][:5]
        incidents = [json.loads(p.read_text()) for p in incident_files(gw.records)]
        assert [i["backend"] for i in incidents] == ["node-1"]
        assert not incidents[0]["engine_crash"]  # its connections vanished
        assert gw.metric("warden_quarantine_probes_total", 'outcome="survived"') >= 1
        assert gw.metric("warden_quarantine_entries", 'state="blocked"') == 0
    finally:
        stop.set()
        gw.stop()
        sim.stop()


def test_a_real_poison_kills_one_engine_only_and_is_then_blocked(tmp_path):
    """The poison kills its engine (the engine says so: held); once that engine is back it
    gets the one probe, dies again, and the poison is blocked fleet-wide. No other engine
    ever receives it."""
    sim = SimProcess(3, "--restart-after", "0.5", "--exit-after", "0.3")
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"},
                        "health": FAST_HEALTH, "discovery": {"unreachable_cooldown": "100ms"}})
    try:
        status, answer = send(gw.url, POISON, "poison-1")
        assert status == 500 and b"withheld" in answer  # (the engine's text shows internals)
        dead = next(n for n in range(3) if "poison-1" in sim.request_ids(
            via=(n + 1) % 3).get(n, []))
        status, answer = send(gw.url, POISON, "poison-2")  # its client's retry
        assert status == 403 and b"held" in answer, answer

        def back() -> bool:
            return gw.call(lambda: f"node-{dead}" not in gw.gateway.incidents.down)
        wait_until(back, timeout=20, what="the engine that died to be alive again")
        status, answer = send(gw.url, POISON, "poison-3")  # the probe, on that engine only
        assert status == 500, answer
        status, answer = send(gw.url, POISON, "poison-4")
        assert status == 403 and b"a probe of it died" in answer, answer
        assert gw.metric("warden_quarantine_probes_total", 'outcome="failed"') == 1
        for node in set(range(3)) - {dead}:  # the other engines never saw it, and live
            seen = sim.request_ids(via=node)[node]
            assert not any(rid.startswith("poison") for rid in seen), seen
        assert set(range(3)) - {dead} <= set(alive(sim))
        wait_until(lambda: len(incident_files(gw.records)) == 2, timeout=15,
                   what="an incident for each death (crash, restart, crash again)")
    finally:
        gw.stop()
        sim.stop()


def test_a_node_down_at_start_is_no_engine_death(tmp_path):
    sim = SimProcess(2)
    sim.kill_node(1, via=0)
    gw = GatewayThread({"backends": sim.backends_config(), "health": FAST_HEALTH,
                        "discovery": {"interval": "100ms"}})
    try:
        for n in range(5):  # traffic, health checks and discovery polls all see it down
            assert send(gw.url, {"model": "sim-model", "messages": MESSAGES}, f"r{n}")[0] \
                == 200
        wait_until(lambda: gw.call(lambda: "node-1" in gw.gateway.incidents.down),
                   what="node-1 known down")
        sim.revive_node(1, via=0)
        wait_until(lambda: gw.call(lambda: "node-1" in gw.gateway.incidents.alive),
                   what="node-1 alive")
        assert incident_files(gw.records) == []
        sim.kill_node(1, via=0)  # now it was alive: this one is a death
        wait_until(lambda: incident_files(gw.records), timeout=15, what="an incident")
    finally:
        gw.stop()
        sim.stop()


def test_the_printed_lift_command_works_as_printed_and_lifts_the_request():
    sim = SimProcess(3, "--restart-after", "-1")
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"}})
    try:
        assert send(gw.url, POISON, "poison")[0] == 500
        status, answer = send(gw.url, POISON, "retry")
        assert status == 403
        message = json.loads(answer)["error"]["message"]
        printed = message.split("An operator can lift it: ", 1)[1]
        argv = shlex.split(printed)
        assert argv[0] == "warden" and f"--url {gw.url}" in printed
        lifted = subprocess.run([sys.executable, "-m", *argv], capture_output=True,
                                text=True, timeout=60)
        assert lifted.returncode == 0, lifted.stdout + lifted.stderr
        assert json.loads(http("GET", f"{gw.url}/admin/quarantine")[2])["quarantine"] == []
        # Not refused under its other fingerprint: it reaches an engine again (and kills it).
        assert send(gw.url, POISON, "after-lift")[0] == 500
    finally:
        gw.stop()
        sim.stop()


def test_a_redis_store_that_hangs_or_is_gone_never_opens_the_gate_silently(
        prefix, caplog):  # noqa: F811
    sim = SimProcess(3, "--restart-after", "-1")
    proxy = TcpProxy("127.0.0.1", 6379)
    quarantine = {"store": "redis", "redis_url": f"redis://{proxy.url_host}/0",
                  "key_prefix": prefix, "refresh": "100ms", "timeout": "300ms"}
    gw = GatewayThread({"backends": sim.backends_config(),
                        "guard": {"mode": "dry_run", "quarantine": quarantine}})
    closed = None
    caplog.set_level(logging.INFO, logger="warden.quarantine")
    try:
        proxy.set(HANG)  # accepts, never answers
        assert send(gw.url, POISON, "poison")[0] == 500
        status, answer = send(gw.url, POISON, "retry")
        assert status == 403, answer  # this gateway knows what it struck
        def listing() -> dict:
            return json.loads(http("GET", f"{gw.url}/admin/quarantine")[2])
        wait_until(lambda: listing()["store"]["up"] is False, what="the store seen down")
        held = listing()
        assert held["quarantine"] and held["store"]["pending"] >= 1
        assert held["store"]["error"] == "TimeoutError: no answer within 0.3s"
        assert gw.metric("warden_quarantine_store_up") == 0
        ready = json.loads(http("GET", f"{gw.url}/ready")[2])
        assert ready["status"] == "ready" and ready["quarantine"]["up"] is False
        wait_until(lambda: gw.metric("warden_quarantine_store_failures_total") >= 3,
                   what="retries")
        failures = [r for r in caplog.records if r.name == "warden.quarantine"
                    and r.levelno >= logging.ERROR]
        assert len(failures) == 1, [r.getMessage() for r in failures]  # backed off

        proxy.set(FORWARD)  # back: what it struck meanwhile reaches the store
        wait_until(lambda: gw.metric("warden_quarantine_store_up") == 1, timeout=40,
                   what="the store back")
        stored = redis.Redis.from_url(REDIS).hgetall(f"{prefix}quarantine")
        assert len(stored) == len(held["quarantine"])

        # Fail closed: with its store gone, a gateway lets nothing through and says why.
        proxy.set(REFUSE)
        closed = GatewayThread({"backends": sim.backends_config(), "guard": {
            "quarantine": {**quarantine, "fail_mode": "closed"}}})
        status, answer = send(closed.url, {"model": "sim-model", "messages": MESSAGES}, "c1")
        assert status == 503 and json.loads(answer)["error"]["code"] == \
            "quarantine_unavailable"
        assert http("GET", f"{closed.url}/ready")[0] == 503
        proxy.set(FORWARD)
        wait_until(lambda: send(closed.url, {"model": "sim-model", "messages": MESSAGES},
                                "c2")[0] == 200, timeout=40, what="the gate open again")
    finally:
        if closed is not None:
            closed.stop()
        gw.stop()
        proxy.close()
        sim.stop()
