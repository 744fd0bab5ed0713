"""An engine dies on the seed's request among mixed traffic; the gateway writes an incident
that names that request first among its suspects, and every other record is intact."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

from tests.harness import GatewayThread, SimProcess, http, wait_until
from warden.audit.reader import read_records, record_files, requests
from warden.audit.report import incident_files

JSON = {"Content-Type": "application/json"}
POISON = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
          "structured_outputs": {}}  # kills a vLLM 0.11 engine (the seed's crash)


def test_the_request_that_killed_an_engine_is_the_first_suspect(tmp_path):
    sim = SimProcess(3, "--token-delay", "0.02", "--output-tokens", "100",
                     "--restart-after", "-1")
    # The guard only watching (dry run): enforcing, it would normalize the poison away.
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"mode": "dry_run"},
                        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms",
                                     "min_free_disk": 0}})
    sent: list[str] = []
    try:
        def stream(n: int) -> None:
            body = {"model": "sim-model", "stream": True, "messages": [
                {"role": "user", "content": f"long {n}"}]}
            http("POST", f"{gw.url}/v1/chat/completions", json.dumps(body).encode(),
                 {**JSON, "X-Request-Id": f"stream-{n}"}, timeout=30)

        streams = [threading.Thread(target=stream, args=(n,)) for n in range(6)]
        for thread in streams:
            thread.start()
        sent += [f"stream-{n}" for n in range(6)]
        wait_until(lambda: gw.in_flight() == 6, what="six streams in flight")
        for n in range(4):
            body = {"model": "sim-model", "max_tokens": 2, "logprobs": True,
                    "messages": [{"role": "user", "content": f"plain {n}"}]}
            status, _, _ = http("POST", f"{gw.url}/v1/chat/completions",
                                json.dumps(body).encode(), {**JSON, "X-Request-Id": f"plain-{n}"})
            assert status == 200
            sent.append(f"plain-{n}")
        status, headers, body = http("POST", f"{gw.url}/v1/chat/completions",
                                     json.dumps(POISON).encode(),
                                     {**JSON, "X-Request-Id": "the-poison"})
        sent.append("the-poison")
        # The engine's words show its insides: the client reads a generic text, the record
        # and the forensics the original.
        assert status == 500 and b"withheld" in body and b"EngineCore" not in body
        dead = f"node-{sim.node_of(headers)}"

        wait_until(lambda: incident_files(str(tmp_path)), timeout=15, what="an incident")
        incident = json.loads(incident_files(str(tmp_path))[0].read_text())
        assert incident["backend"] == dead
        first = incident["suspects"][0]
        assert first["id"] == "the-poison"
        assert first["unusual"][0].startswith("structured_outputs with no usable constraint")
        assert len(incident["suspects"]) >= 2  # the streams it cut are suspects too
        assert all(s["score"] < first["score"] for s in incident["suspects"][1:])

        for thread in streams:
            thread.join(timeout=30)
        gw.wait_idle()
        recorder = gw.gateway.recorder
        gw.call(recorder.flush)
        wait_until(lambda: recorder.written == recorder.handed, what="records written")
        records = {r.id: r for r in requests(read_records(record_files(tmp_path)))}
        assert all(records[rid].start and records[rid].end for rid in sent)
        assert records["the-poison"].start["guard"] == ["would normalize so-no-constraint"]
        assert records["the-poison"].end["error"] == (
            "upstream error text withheld from the client: EngineCore encountered an issue. "
            "See stack trace (above) for the root cause.")
        assert gw.metric("warden_guard_decisions_total", 'mode="dry_run"') == 1

        listed = subprocess.run([sys.executable, "-m", "warden", "incidents", "list", "--dir",
                                 str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "first suspect the-poison" in listed.stdout

        bundle = tmp_path / "bundle.tar.gz"
        exported = subprocess.run([sys.executable, "-m", "warden", "incidents", "export",
                                   incident["id"], "--dir", str(tmp_path), "-o", str(bundle)],
                                  capture_output=True, text=True, timeout=60)
        assert exported.returncode == 0, exported.stderr
        with tarfile.open(bundle) as tar:
            files = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert set(files) == {"README.txt", "incident.json", "suspects.jsonl", "timeline.txt",
                              "metrics.txt"}
        first_suspect = json.loads(files["suspects.jsonl"].splitlines()[0])
        assert json.loads(first_suspect["start"]["body"]) == POISON
        assert b"vllm:num_requests_running" in files["metrics.txt"]
        assert b"request the-poison arrived" in files["timeline.txt"]
    finally:
        gw.stop()
        sim.stop()

    # Bisect against a fresh scratch node, in arrival order: the others survive, then it dies.
    scratch = SimProcess(1, "--restart-after", "-1")
    try:
        bisected = subprocess.run(
            [sys.executable, "-m", "warden", "bisect", incident["id"], "--dir", str(tmp_path),
             "--target", scratch.url(0), "--chronological", "--settle", "0.3"],
            capture_output=True, text=True, timeout=120)
    finally:
        scratch.stop()
    assert bisected.returncode == 0, bisected.stdout + bisected.stderr
    survived = [line for line in bisected.stdout.splitlines() if "survived" in line]
    assert len(survived) == len(incident["suspects"]) - 1
    assert "the killer: the-poison (its answer was the engine-dead 500)" in bisected.stdout


def test_a_backend_that_stops_answering_discovery_is_an_incident(tmp_path):
    """No traffic at all: the discovery poll finding a serving backend gone opens one too."""
    sim = SimProcess(2)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "discovery": {"interval": "100ms"},
                        "recorder": {"dir": str(tmp_path)}})
    try:
        sim.kill_node(1)
        wait_until(lambda: incident_files(str(tmp_path)), timeout=15, what="an incident")
        incident = json.loads(incident_files(str(tmp_path))[0].read_text())
        assert incident["backend"] == "node-1"
        assert incident["detected_by"] == "discovery poll: connection refused"
    finally:
        gw.stop()
        sim.stop()
