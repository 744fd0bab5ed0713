"""The flight recorder through a real gateway and `warden sim`: every request's records, bodies
verbatim, secrets never on disk, a stream's text; what survives a SIGKILL; a disk cap that
holds under load."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http, serve, wait_until
from warden.audit.reader import ReadStats, read_records, record_files, requests

SECRET = "sk-never-on-disk-4242"
JSON = {"Content-Type": "application/json"}


def written(gw: GatewayThread) -> None:
    """Until every record queued so far is on disk (the writer thread caught up)."""
    recorder = gw.gateway.recorder
    gw.call(recorder.flush)
    wait_until(lambda: recorder.written == recorder.handed, what="records written")


def joined(directory: Path) -> dict:
    return {r.id: r for r in requests(read_records(record_files(directory)))}


@pytest.fixture
def recorded(fleet, tmp_path):
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "recorder": {"dir": str(tmp_path), "response": "full",
                                     "flush_interval": "50ms", "min_free_disk": 0}})
    yield gw, tmp_path
    gw.stop()


def test_every_request_is_recorded_with_its_body_and_outcome(recorded):
    gw, directory = recorded
    client = OpenAI(base_url=f"{gw.url}/v1", api_key=SECRET, max_retries=0)
    plain = client.chat.completions.with_raw_response.create(
        model="sim-model", max_tokens=4, messages=[{"role": "user", "content": "héllo 😀"}])
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="sim-model", max_tokens=6, stream=True,
        messages=[{"role": "user", "content": "stream"}]) if c.choices)
    bad = http("POST", f"{gw.url}/v1/chat/completions", b'{"model": ', JSON)
    unknown = http("POST", f"{gw.url}/v1/completions", b'{"model": "nope", "prompt": "x"}',
                   JSON, )
    written(gw)
    records = joined(directory)
    assert len(records) == 4 and all(r.start and r.end for r in records.values())

    first = records[plain.headers["x-request-id"]]
    assert json.loads(first.start["body"])["messages"][0]["content"] == "héllo 😀"
    assert first.end["status"] == 200 and first.end["backend"].startswith("node-")
    assert first.end["usage"]["completion_tokens"] == 4
    assert json.loads(first.end["response"]) == json.loads(plain.http_response.content)
    assert first.start["headers"]["user-agent"].startswith("OpenAI/Python")

    stream = next(r for r in records.values() if r.start["stream"])
    assert stream.end["verdict"] == "complete" and stream.end["text"] == streamed
    assert stream.end["ttft"] > 0 and stream.end["finish_reasons"] == ["length"]

    by_status = {r.end["status"]: r for r in records.values()}
    assert bad[0] == 400 and by_status[400].start["body"] == '{"model": '
    assert unknown[0] == 404 and by_status[404].end["error"].startswith("The model `nope`")
    assert by_status[404].end["backend"] is None

    on_disk = b"".join(p.read_bytes() for p in directory.iterdir())
    assert SECRET.encode() not in on_disk


def test_sigkill_under_load_loses_only_the_last_moments(tmp_path, fleet):
    """Killed with SIGKILL in the middle of a load, the gateway leaves both records of every
    request it answered half a second (five flush intervals) before the kill."""
    backends = "\n".join(f"  - name: n{i}\n    url: {fleet.url(i)}" for i in range(3))
    proc, base = serve(f"backends:\n{backends}\n"
                       "recorder: {dir: records, flush_interval: 100ms}\n", tmp_path)
    url = f"{base}/v1/completions"
    answered: list[tuple[float, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            rid = f"w{worker}-{n}"
            try:
                status, _, _ = http("POST", url, json.dumps(
                    {"model": "sim-model", "prompt": rid, "max_tokens": 1}).encode(),
                    {**JSON, "X-Request-Id": rid}, timeout=5)
            except OSError:
                return
            if status == 200:
                answered.append((time.monotonic(), rid))

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    wait_until(lambda: sum(at < time.monotonic() - 0.6 for at, _ in answered) >= 200,
               timeout=30, what="200 answers 0.6 s old")
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait()
    stop.set()
    for worker in workers:
        worker.join()

    stats = ReadStats()
    records = {r.id: r for r in requests(read_records(record_files(tmp_path / "records"),
                                                      stats))}
    settled = [rid for at, rid in answered if at < killed_at - 0.5]
    assert len(settled) >= 200
    missing = [rid for rid in settled if rid not in records or records[rid].end is None]
    assert missing == []
    assert stats.unreadable_lines <= 1  # at most the one line being written at the kill


def test_the_disk_cap_holds_under_load(tmp_path):
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "recorder": {"dir": str(tmp_path), "response": "full",
                                     "max_file_size": "16KiB", "max_total_size": "64KiB",
                                     "flush_interval": "10ms"}})
    peak = 0
    sampling = threading.Event()

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:  # deleted between listing and stat
            return 0

    def sample() -> None:
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, sum(size(p) for p in tmp_path.iterdir()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        for n in range(300):
            client.completions.create(model="sim-model", prompt=f"{n} " + "word " * 100,
                                      max_tokens=2)
        written(gw)
    finally:
        sampling.set()
        sampler.join()
        gw.stop()
        sim.stop()
    assert 0 < peak <= 64 * 1024
    assert len(list(tmp_path.glob("*.jsonl.zst"))) >= 1
    ids = [r.id for r in requests(read_records(record_files(tmp_path)))]
    assert 10 < len(ids) < 300  # the newest were kept, the oldest deleted


def test_replay_resends_recorded_requests_byte_for_byte(recorded, fleet):
    gw, directory = recorded
    bodies = [json.dumps({"model": "sim-model", "max_tokens": 3, "messages": [
                  {"role": "user", "content": f"replay me {n}"}]}).encode() for n in range(3)]
    bodies.append(json.dumps({"model": "sim-model", "max_tokens": 3, "stream": True,
                              "messages": [{"role": "user", "content": "a stream"}]},
                             indent=1).encode())  # newlines and all
    ids = [http("POST", f"{gw.url}/v1/chat/completions", body,
                {**JSON, "X-Request-Id": f"orig-{n}"})[1]["x-request-id"]
           for n, body in enumerate(bodies)]
    written(gw)

    # To a raw socket first: what arrives is exactly what was recorded.
    seen: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(len(bodies)):
            conn, _ = server.accept()
            with conn:
                seen.append(_read_request(conn))
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    catcher = threading.Thread(target=serve)
    catcher.start()
    result = subprocess.run([sys.executable, "-m", "warden", "audit", "replay", "--dir",
                             str(directory), "--target", f"http://127.0.0.1:{port}", "--fast"],
                            capture_output=True, text=True, timeout=60)
    catcher.join(timeout=10)
    server.close()
    assert result.returncode == 0, result.stderr
    assert sorted(data.partition(b"\r\n\r\n")[2] for data in seen) == sorted(bodies)
    assert all(b"\r\nx-request-id: orig-" in data and b".replay\r\n" in data for data in seen)

    # To a sim node: answered, the stream judged as the gateway judges one.
    result = subprocess.run([sys.executable, "-m", "warden", "audit", "replay", "--dir",
                             str(directory), "--target", fleet.url(0), "--speed", "10"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all("replayed 200" in line for line in lines)
    assert "orig-3" in lines[-1] and "replayed 200 complete" in lines[-1]
    assert {f"{rid}.replay" for rid in ids} <= set(fleet.request_ids()[0])


def _read_request(conn: socket.socket) -> bytes:
    """One whole request with a Content-Length body, as it came off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body
