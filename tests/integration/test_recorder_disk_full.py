"""The flight recorder on a real filesystem that fills up (a 3 MiB tmpfs, mounted here: the
tests run as root): records are dropped and counted while it is full, no temporary file stays
behind, the disk bytes reported are those that exist, the log says it a few times (not on
every flush, never with a traceback), and recording resumes by itself once space is freed."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import GatewayThread, SimProcess, http, wait_until
from warden.audit.reader import read_records, record_files, requests
from warden.record.files import OPEN_NAME

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs (root needed): {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def send(url: str, rid: str) -> None:
    body = json.dumps({"model": "sim-model", "max_tokens": 1, "prompt":
                       base64.b64encode(os.urandom(9 * 1024)).decode()}).encode()
    status, _, _ = http("POST", f"{url}/v1/completions", body, {**JSON, "X-Request-Id": rid})
    assert status == 200


def warden_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir()
               if p.name.startswith("warden") and ".jsonl" in p.name)


def test_a_full_disk_drops_counts_and_recovers_by_itself(small_disk, caplog):
    caplog.set_level(logging.WARNING, "warden.record")
    records = small_disk / "records"
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "recorder": {"dir": str(records), "max_file_size": "512KiB",
                                     "min_free_disk": 0, "flush_interval": "20ms"}})
    try:
        n = 0
        while gw.metric("warden_recorder_dropped_total", 'cause="disk_full"') < 50:
            send(gw.url, f"fill-{n}")
            n += 1
            assert n < 2000, "the disk never filled"
        for _ in range(20):  # full for a while: many flushes fail
            send(gw.url, f"full-{n}")
            n += 1
        assert not list(records.glob("*.tmp"))
        full_log = len(caplog.records)

        for path in records.glob("warden-*"):  # the operator makes room
            path.unlink()
        wait_until(lambda: gw.metric("warden_recorder_disk_bytes") == warden_bytes(records),
                   what="the disk bytes reported to be what exists")
        after = [f"after-{m}" for m in range(20)]
        for rid in after:
            send(gw.url, rid)
        wait_until(lambda: set(after) <= {r.id for r in requests(read_records(
            record_files(records))) if r.end is not None}, what="records written again")
        assert (records / OPEN_NAME).exists()
        wait_until(lambda: gw.metric("warden_recorder_disk_bytes") == warden_bytes(records),
                   what="the disk bytes reported to be what exists")
        wait_until(lambda: gw.metric("warden_recorder_queued_bytes") == 0,
                   what="nothing left waiting for the writer")
    finally:
        gw.stop()
        sim.stop()
    assert not list(records.glob("*.tmp"))
    # Dozens of flushes failed; the log spoke of it a few times: the rotated file left
    # uncompressed, the writer's first line, the loop's summary (and, as small records still
    # fit while large ones did not, at most one "writing again").
    assert full_log <= 4, caplog.messages
    assert all(r.exc_info is None for r in caplog.records), caplog.messages
    assert any("writing again" in message for message in caplog.messages)
    assert any("cannot write (No space left on device)" in m for m in caplog.messages)
