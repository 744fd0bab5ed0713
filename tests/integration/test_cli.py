"""The `warden` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import SimProcess, free_port_block, http, running_demo, serve, wait_until


def warden(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_check_config_reports_every_problem_with_its_path(tmp_path: Path):
    config = tmp_path / "warden.yaml"
    config.write_text("""
listen: 127.0.0.1:8000
backends:
  - name: node-a
    url: http://127.0.0.1:18090
  - name: node-b
    url: not-a-url
routing:
  policy: fastest
timeouts: {connect: soon}
limits: {max_body: 100MiB}
colour: blue
""")
    result = warden("check-config", "-c", str(config))
    assert result.returncode == 2
    assert "backends[1].url: not a URL" in result.stderr
    assert "routing.policy: must be 'round_robin', 'least_request', 'weighted', 'tiered', " \
        "'load_aware' or 'prefix_aware'" in result.stderr
    assert "timeouts.connect: not a duration" in result.stderr
    assert "colour: unknown field" in result.stderr


def test_check_config_secret_from_environment(tmp_path: Path):
    config = tmp_path / "warden.yaml"
    config.write_text("backends:\n  - {name: a, url: 'http://127.0.0.1:1', "
                      "api_key: '${VLLM_KEY}'}\n")
    missing = warden("check-config", "-c", str(config), env={"PATH": ""})
    assert missing.returncode == 2
    assert "backends[0].api_key: environment variable VLLM_KEY is not set" in missing.stderr
    ok = warden("check-config", "-c", str(config), env={"VLLM_KEY": "s3cret"})
    assert ok.returncode == 0, ok.stderr
    assert "s3cret" not in ok.stdout


def test_check_config_bad_yaml_and_missing_file(tmp_path: Path):
    config = tmp_path / "warden.yaml"
    config.write_text("backends: [\n")
    result = warden("check-config", "-c", str(config))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    result = warden("check-config", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_serve_runs_the_gateway_from_a_config(tmp_path: Path, fleet):
    backends = "\n".join(f"  - name: n{i}\n    url: {fleet.url(i)}" for i in range(3))
    proc, url = serve(f"backends:\n{backends}\n"
                      "timeouts: {connect: 5s, first_byte: 600s, idle: 600s}\n", tmp_path)
    try:
        status, _, body = http("POST", f"{url}/v1/completions", json.dumps(
            {"model": "sim-model", "prompt": "hi", "max_tokens": 2}).encode(),
            {"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_sigterm_drains_streams_in_flight_then_exits(tmp_path: Path):
    import signal
    import socket
    import threading

    sim = SimProcess(1, "--token-delay", "0.02", "--output-tokens", "60")
    proc, url = serve(f"backends:\n  - name: a\n    url: {sim.url(0)}\n", tmp_path)
    port = int(url.rsplit(":", 1)[1])
    try:
        streamed: list[bytes] = []
        body = json.dumps({"model": "sim-model", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        reader = threading.Thread(target=lambda: streamed.append(http(
            "POST", f"{url}/v1/chat/completions", body,
            {"Content-Type": "application/json"}, timeout=30)[2]))
        reader.start()
        wait_until(lambda: sim.metric(0, "vllm:generation_tokens_total") >= 2,
                   what="the stream to be under way")
        proc.send_signal(signal.SIGTERM)

        def refusing() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) != 0

        wait_until(refusing, what="new connections to be refused")
        reader.join(30)
        assert streamed and streamed[0].endswith(b"data: [DONE]\n\n")  # finished, not cut
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sim.stop()


def test_demo_serves_a_simulated_fleet_and_records_every_request(tmp_path: Path):
    """The README's first command: three sim nodes and the gateway; the banner's example
    works, and `warden audit` finds the request in the records the banner points at."""
    with running_demo(tmp_path) as (banner, port):
        assert f"http://127.0.0.1:{port}/v1/chat/completions" in banner
        assert "warden audit tail -f --dir warden-records" in banner
        status, headers, _ = http("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                                  json.dumps({"model": "sim-model", "max_tokens": 2, "messages":
                                              [{"role": "user", "content": "hi"}]}).encode(),
                                  {"Content-Type": "application/json"})
        assert status == 200
        request_id = headers["x-request-id"]
        shown = wait_until(lambda: (r := warden("audit", "show", request_id, cwd=tmp_path))
                           .returncode == 0 and '"type": "end"' in r.stdout and r,
                           what="the demo's request in its records")
        assert '"model": "sim-model"' in shown.stdout


def test_serve_explains_an_unwritable_recorder_directory(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    config = tmp_path / "warden.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_port_block(1)}\nbackends:\n  - name: a\n"
                      f"    url: http://127.0.0.1:9\nrecorder: {{dir: {blocker}/records}}\n")
    result = warden("serve", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"recorder.dir {blocker}/records" in result.stderr
    assert "Traceback" not in result.stderr
