"""An engine's error text that shows its insides, through a real gateway and `warden sim`: the
client reads a generic message with the same status and its request id; the flight record
keeps the original (its `error`, and the response itself); an ordinary error passes as it is;
turned off, the original passes."""

from __future__ import annotations

import json

from tests.harness import GatewayThread, SimProcess, http, wait_until
from warden.audit.reader import read_records, record_files, requests

JSON = {"Content-Type": "application/json"}
POISON = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
          "structured_outputs": {}}  # kills a vLLM 0.11 engine, which answers 500
DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause."


def send(gw: GatewayThread, body: dict, request_id: str):
    return http("POST", f"{gw.url}/v1/chat/completions", json.dumps(body).encode(),
                {**JSON, "X-Request-Id": request_id})


def test_an_engine_error_that_shows_internals_is_withheld_and_recorded(tmp_path):
    sim = SimProcess(1, "--restart-after", "-1")
    # The guard off: on, it would normalize the poison away before it reached the engine.
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "off"},
                        "recorder": {"dir": str(tmp_path), "response": "full",
                                     "flush_interval": "50ms", "min_free_disk": 0}})
    try:
        status, headers, body = send(gw, POISON, "the-poison")
        error = json.loads(body)["error"]
        assert status == 500 and error["code"] == 500 and error["type"] == "InternalServerError"
        assert "withheld" in error["message"] and "the-poison" in error["message"]
        assert "EngineCore" not in body.decode() and headers["x-request-id"] == "the-poison"
        assert headers["content-type"] == "application/json"

        # The dead engine answers everything with the same text: withheld every time.
        status, _, body = send(gw, {"model": "sim-model", "messages": [
            {"role": "user", "content": "hi"}]}, "after")
        assert status == 500 and b"withheld" in body

        gw.wait_idle()
        recorder = gw.gateway.recorder
        gw.call(recorder.flush)
        wait_until(lambda: recorder.written == recorder.handed, what="records written")
        records = {r.id: r for r in requests(read_records(record_files(tmp_path)))}
        end = records["the-poison"].end
        assert end["status"] == 500
        assert end["error"] == f"upstream error text withheld from the client: {DEAD}"
        assert json.loads(end["response"])["error"]["message"] == DEAD
    finally:
        gw.stop()
        sim.stop()


def test_ordinary_errors_pass_and_the_setting_turns_it_off():
    sim = SimProcess(1, "--restart-after", "-1")
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "off"}})
    off = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "off"},
                         "scrub_upstream_errors": False})
    try:
        empty_choice = {**POISON, "structured_outputs": {"choice": []}}
        direct = http("POST", f"{sim.url(0)}/v1/chat/completions",
                      json.dumps(empty_choice).encode(), JSON)
        status, _, body = send(gw, empty_choice, "empty-choice")
        assert (status, body) == (direct[0], direct[2]) and status == 400  # the engine's own
        assert b"cannot be an empty list" in body
        status, _, body = send(off, POISON, "the-poison")
        assert status == 500 and json.loads(body)["error"]["message"] == DEAD
    finally:
        off.stop()
        gw.stop()
        sim.stop()
