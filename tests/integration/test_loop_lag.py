"""The event loop's lag, as a running gateway exports it: a real histogram under the name
alerts read, ticking while requests are served, stalls by cause; and the whole /metrics text
passes `promtool check metrics`."""

from __future__ import annotations

import subprocess
import time

from openai import OpenAI

from tests.harness import GatewayThread, http, wait_until


def test_the_lag_histogram_ticks_while_serving_and_is_valid_prometheus(gateway: GatewayThread):
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    before = gateway.metric("warden_event_loop_lag_seconds_count")
    for _ in range(20):
        answer = client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert answer.choices[0].message.content
    wait_until(lambda: gateway.metric("warden_event_loop_lag_seconds_count") > before + 5,
               what="the probe's ticks")
    _, _, body = http("GET", f"{gateway.url}/metrics")
    text = body.decode()
    assert "# TYPE warden_event_loop_lag_seconds histogram" in text
    for bound in ("0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1.0", "+Inf"):
        assert f'warden_event_loop_lag_seconds_bucket{{le="{bound}"}}' in text
    assert 'warden_event_loop_stalls_total{cause="gc_full"}' in text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_stall_on_the_gateway_s_loop_is_counted(gateway: GatewayThread):
    """A callback that blocks the loop for 50 ms, as a blocking call would: a stall of about
    that length, in the histogram's top buckets and counted by cause. (Waited for by its own
    signs, the slow bucket and 30 ms or more of stall seconds: a shorter stall of a loaded
    machine can be counted first.)"""
    def stall_seconds() -> float:
        return sum(gateway.metric("warden_event_loop_stall_seconds_total", f'cause="{cause}"')
                   for cause in ("waiting", "preempted", "unknown"))

    def slow() -> float:
        return gateway.metric("warden_event_loop_lag_seconds_bucket", 'le="+Inf"') - \
            gateway.metric("warden_event_loop_lag_seconds_bucket", 'le="0.01"')

    before_slow, before = slow(), stall_seconds()
    gateway.call(lambda: time.sleep(0.05))  # the stall, on the loop's thread
    wait_until(lambda: slow() >= before_slow + 1, what="a lag over 10 ms observed")
    # (A 50 ms stall shows as a lag of 50 ms less at most one idle tick's 20 ms.)
    wait_until(lambda: stall_seconds() >= before + 0.03, what="the stall counted by cause")
