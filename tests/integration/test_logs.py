"""The gateway's logs through `warden serve`: JSON lines with the stable fields, the start-up
and shutdown lines, an access line per sampled request; `--log-level` against
`logging.level`; and a stderr nobody reads stalls nothing (the lines are dropped, counted)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import yaml
from openai import OpenAI

from tests.harness import SimProcess, http, serve

ACCESS_FIELDS = {"event", "request_id", "endpoint", "model", "stream", "tenant", "key_id",
                 "client_ip", "backend", "attempts", "status", "verdict", "error", "ttft_ms",
                 "prompt_tokens", "completion_tokens", "duration_ms"}


def start(workdir, sim: SimProcess, logging: dict, *flags: str) -> tuple[subprocess.Popen, str]:
    """`warden serve` with its stderr to a pipe, once it answers /ready."""
    config = {"backends": sim.backends_config(),
              "recorder": {"dir": str(workdir / "records")}, "logging": logging}
    return serve(yaml.safe_dump(config), workdir, *flags, stderr=subprocess.PIPE)


def requests(url: str, count: int) -> None:
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    for n in range(count):
        ids = {"x-request-id": f"t-{n + 1}"}
        if n % 2:
            stream = client.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "Hi"}], stream=True,
                stream_options={"include_usage": True}, extra_headers=ids)
            assert [c for c in stream][-1].usage is not None
        else:
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=3,
                                      extra_headers=ids)


def stopped(proc: subprocess.Popen) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err.splitlines()


def test_json_lines_with_the_start_access_and_stop_lines(tmp_path):
    sim = SimProcess(1)
    try:
        proc, url = start(tmp_path, sim, {"format": "json",
                                          "access_log": {"enabled": True, "sample": 0.5}})
        requests(url, 6)
        lines = [json.loads(line) for line in stopped(proc)]  # (every line is JSON)
    finally:
        sim.stop()
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= set(line), line
    events = [line.get("event") for line in lines]
    assert events.count("start") == 1 and events[-1] == "stop"
    first = next(line for line in lines if line.get("event") == "start")
    assert first["version"] and first["python"] and first["pid"] == proc.pid
    assert first["build"] in ("compiled", "interpreted") \
        or first["build"].startswith("partly compiled")
    assert first["listen"] == url.removeprefix("http://")
    assert first["config"]["backends"] == 1 and first["config"]["access_log"] == 0.5
    assert first["config"]["log_format"] == "json" and first["config"]["tracing"] is None
    assert lines[-1]["requests"] == 6 and lines[-1]["log_dropped"] == 0
    access = [line for line in lines if line.get("event") == "access"]
    assert [a["request_id"] for a in access] == ["t-2", "t-4", "t-6"]  # (every other one)
    for line in access:
        assert set(line) >= ACCESS_FIELDS, line
        assert line["logger"] == "warden.access" and line["status"] == 200
        assert line["stream"] is True and line["verdict"] == "complete"
        assert line["backend"] == "node-0" and line["model"] == "sim-model"
        assert line["completion_tokens"] == 16 and line["prompt_tokens"] > 0
        assert line["ttft_ms"] > 0 and line["duration_ms"] >= line["ttft_ms"]


def test_the_log_level_flag_wins_and_access_lines_go_at_any_level(tmp_path):
    sim = SimProcess(1)
    try:
        proc, url = start(tmp_path, sim, {"level": "debug", "access_log": {"enabled": True}},
                          "--log-level", "error")
        requests(url, 2)
        lines = stopped(proc)
    finally:
        sim.stop()
    # Text lines; the INFO start-up line is below the flag's level, the access lines are not.
    assert not any("warden started" in line for line in lines)
    access = [line for line in lines if " INFO warden.access: request " in line]
    assert len(access) == 2 and "request_id=t-1 " in access[0] and "status=200" in access[0]


def test_a_stderr_nobody_reads_stalls_nothing_and_the_drops_are_counted(tmp_path):
    sim = SimProcess(1)
    proc = None
    try:
        proc, url = start(tmp_path, sim, {"format": "json", "queue_size": 50,
                                          "access_log": {"enabled": True}})
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        slowest = 0.0
        for _ in range(600):  # ~250 KB of access lines: 4 pipes' worth
            started = time.monotonic()
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=2)
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 2.0, slowest
        _, _, body = http("GET", f"{url}/metrics")
        dropped = [line for line in body.decode().splitlines()
                   if line.startswith("warden_log_dropped_total ")]
        assert float(dropped[0].split()[1]) > 300, dropped
        proc.send_signal(signal.SIGTERM)  # it stops in time, its writer stuck
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        sim.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
