"""`warden reload`: the one gateway asked re-reads its config file (through its admin API,
`POST /admin/reload`), and the command prints what came of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import GatewayThread, SimProcess, http, serve


def warden(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_reload_applies_the_file_and_says_what_it_did(tmp_path: Path, fleet: SimProcess):
    backend = f"backends:\n  - {{name: node-0, url: '{fleet.url(0)}'}}\n" \
              "reload: {watch: false}\n"  # only asked reloads
    proc, url = serve(backend, tmp_path)
    (tmp_path / "other").mkdir()
    other, other_url = serve(backend, tmp_path / "other")  # a second gateway on the machine
    config = tmp_path / "warden.yaml"
    listen = config.read_text().splitlines()[0]
    try:
        config.write_text(f"{listen}\n{backend}routing: {{policy: round_robin}}\n"
                          f"recorder: {{dir: {tmp_path / 'elsewhere'}}}\n")
        done = warden("reload", "-c", str(config))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"{config}: reloaded (1 backends, policy round_robin)",
            "changed, but waiting for a restart: recorder"]
        assert _policy(url) == "round_robin"
        assert _policy(other_url) == "load_aware"  # only the gateway asked

        config.write_text(f"{listen}\nbackends:\n  - {{name: node-1, url: 'not a url'}}\n")
        refused = warden("reload", "--url", url)
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [
            f"{config}: not reloaded; the running config stays:",
            "  backends[0].url: not a URL (expected http://host:port)"]
        assert _policy(url) == "round_robin"
    finally:
        for process in (proc, other):
            process.terminate()
            process.wait(timeout=30)


def _policy(url: str) -> str:
    status, _, body = http("GET", f"{url}/admin/backends")
    assert status == 200
    return json.loads(body)["policy"]


def test_a_gateway_without_a_config_file_says_there_is_nothing_to_reload(fleet: SimProcess):
    gw = GatewayThread({"backends": fleet.backends_config()})  # as `warden demo` builds one
    try:
        status, headers, body = http("POST", f"{gw.url}/admin/reload")
        assert status == 404
        assert "not started from a config file" in json.loads(body)["error"]["message"]
        assert headers["x-request-id"]
        result = warden("reload", "--url", gw.url)
        assert result.returncode == 2 and "not started from a config file" in result.stderr
    finally:
        gw.stop()


def test_reload_cannot_reach_a_gateway(tmp_path: Path):
    result = warden("reload", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.startswith("warden reload: cannot reach http://127.0.0.1:9/admin/")
