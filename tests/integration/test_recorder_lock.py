"""One record directory, one gateway: a second `warden serve` on the same directory refuses to
start with one line naming the holder, and leaves every file of the first one as it was (its
open record file, its incidents, its quarantine), whether or not it could have bound its port.
Real processes, real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.harness import free_port_block, http, serve, wait_until
from warden.audit.reader import read_records, record_files, requests

JSON = {"Content-Type": "application/json"}


def send(base: str, ids: list[str]) -> None:
    for rid in ids:
        status, _, _ = http("POST", f"{base}/v1/completions", json.dumps(
            {"model": "sim-model", "prompt": rid, "max_tokens": 1}).encode(),
            {**JSON, "X-Request-Id": rid})
        assert status == 200


def recorded(directory: Path) -> dict:
    return {r.id: r for r in requests(read_records(record_files(directory)))
            if r.start is not None and r.end is not None}


def snapshot(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `directory`: its inode, size and modification time."""
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_size,
                                            p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def second_serve(config: Path, cwd: Path) -> tuple[int, list[str]]:
    """`warden serve -c config`: its exit code and stderr lines (it must exit: a second
    gateway that started instead is killed and fails the test)."""
    proc = subprocess.Popen([sys.executable, "-m", "warden", "serve", "-c", str(config)],
                            cwd=cwd, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the second gateway started on a directory in use") from None
    return proc.returncode, stderr.strip().splitlines()


def test_a_second_gateway_on_the_same_directory_refuses_and_touches_nothing(tmp_path, fleet):
    records = tmp_path / "records"
    backends = "".join(f"  - {{name: n{i}, url: '{fleet.url(i)}'}}\n" for i in range(3))
    first, base = serve(f"backends:\n{backends}"
                        "recorder: {dir: records, flush_interval: 50ms}\n", tmp_path)
    try:
        send(base, [f"first-{n}" for n in range(5)])
        wait_until(lambda: len(recorded(records)) == 5, what="the first records on disk")
        # The first gateway's other state in the directory: an incident and its quarantine.
        (records / "incidents").mkdir()
        (records / "incidents" / "incident-20260101T000000-n0.json").write_text("{}")
        (records / "quarantine.json").write_text("[]")
        before = snapshot(records)

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        port = int(base.rsplit(":", 1)[1])
        for listen in (f"127.0.0.1:{free_port_block(1)}", f"127.0.0.1:{port}"):
            config = elsewhere / "warden.yaml"
            config.write_text(f"listen: {listen}\nbackends:\n{backends}"
                              f"recorder: {{dir: '{records}'}}\n")
            code, lines = second_serve(config, elsewhere)
            assert code == 2 and len(lines) == 1, lines
            if listen.endswith(f":{port}"):  # its port is taken too: either is said first
                assert "is in use by another warden" in lines[0] \
                    or "Address already in use" in lines[0], lines
            else:
                assert f"{records} is in use by another warden" in lines[0]
                assert f"pid {first.pid}" in lines[0] and "warden serve -c" in lines[0]
            assert snapshot(records) == before

        send(base, [f"after-{n}" for n in range(5)])  # the first goes on recording
        wait_until(lambda: len(recorded(records)) == 10, what="every record on disk")
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert not os.path.exists(records / "warden.lock") or \
        (records / "warden.lock").read_text() == ""
