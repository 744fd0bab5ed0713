"""A stop's grace covers every request the gateway has taken on: one waiting for a connection
to its backend (the pool full) counts as in flight, and is served, not cancelled."""

from __future__ import annotations

import asyncio
import threading

from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_request_waiting_for_a_connection_is_in_flight_through_a_stop():
    sim = SimProcess(1, "--token-delay", "0.02", "--output-tokens", "30")
    gw = GatewayThread({"backends": [{**sim.backends_config()[0], "max_connections": 1}]})
    stopping = None
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.with_streaming_response.create(
            model="sim-model", messages=MESSAGES, stream=True).__enter__()
        wait_until(lambda: gw.in_flight() == 1, what="the stream holding the one connection")
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(
            client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                           max_tokens=2)))
        waiting.start()
        wait_until(lambda: gw.in_flight() == 2, what="the second counted while it waits")
        stopping = gw.call(lambda: asyncio.ensure_future(gw.gateway.stop(grace=30)))
        list(stream.parse())
        stream.close()
        waiting.join(timeout=30)
        assert answers and answers[0].choices[0].finish_reason == "length"
        wait_until(stopping.done, what="the stop, once both were served")
        assert stopping.exception() is None
    finally:
        gw.stop(gateway_stopped=stopping is not None and stopping.done())
        sim.stop()
