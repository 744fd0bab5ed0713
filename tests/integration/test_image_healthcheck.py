"""The image's HEALTHCHECK command (the Dockerfile's), run as the container would run it,
against a live server, one whose engine died, and nothing at all."""

from __future__ import annotations

import json
import subprocess
import sys

from dockerfile_parse import DockerfileParser

from tests.deploy_support import ROOT
from tests.harness import SimProcess, free_port_block, wait_until


def health_command() -> list[str]:
    [check] = [item["value"] for item in DockerfileParser(path=str(ROOT / "Dockerfile")).structure
               if item["instruction"] == "HEALTHCHECK"]
    command = json.loads(check.split("CMD", 1)[1].strip())
    assert command[0] == "python3"
    return [sys.executable, *command[1:]]


def healthy(url: str) -> bool:
    result = subprocess.run(health_command(), env={"WARDEN_HEALTH_URL": url},
                            capture_output=True, timeout=30)
    return result.returncode == 0


def test_the_health_check_tells_a_live_server_from_a_dead_one():
    sim = SimProcess(2, "--restart-after", "-1", "--exit-after", "30")
    try:
        assert healthy(f"{sim.url(0)}/health")
        sim.kill_node(0)  # its engine dies: /health answers 503, as vLLM's and Warden's do
        wait_until(lambda: not healthy(f"{sim.url(0)}/health"), what="an unhealthy verdict")
        assert healthy(f"{sim.url(1)}/health")
    finally:
        sim.stop()
    assert not healthy(f"http://127.0.0.1:{free_port_block(1)}/health")  # nothing listening
