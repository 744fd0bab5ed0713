"""The state lock: one holder at a time (in one process too), a message naming the holder, a
lock file left by a process that is gone never blocks, and a quarantine file kept outside the
record directory is locked as well."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from warden.config import parse_settings
from warden.record.lock import LOCK_NAME, DirectoryInUse, StateLock, hold_state

BACKEND = {"name": "a", "url": "http://127.0.0.1:18090"}


def test_one_holder_at_a_time_and_the_refusal_names_it(tmp_path: Path):
    path = tmp_path / "records" / LOCK_NAME
    held = StateLock.take(path, "recorder.dir records")
    with pytest.raises(DirectoryInUse) as refused:
        StateLock.take(path, "recorder.dir records")
    message = str(refused.value)
    assert message.startswith("recorder.dir records is in use by another warden (pid "
                              f"{os.getpid()}: ")
    assert "\n" not in message
    held.release()
    StateLock.take(path, "recorder.dir records").release()


def test_a_lock_file_left_by_a_process_that_ended_does_not_block(tmp_path: Path):
    path = tmp_path / LOCK_NAME
    child = subprocess.run([sys.executable, "-c", (
        "import sys; from pathlib import Path; from warden.record.lock import StateLock; "
        f"StateLock.take(Path({str(path)!r}), 'x'); sys.exit(0)")],
        env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    assert child.returncode == 0 and path.read_text().startswith("pid ")  # never released
    StateLock.take(path, "x").release()


def test_a_process_holding_it_keeps_others_out(tmp_path: Path):
    path = tmp_path / LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from warden.record.lock import StateLock; "
        f"StateLock.take(Path({str(path)!r}), 'x'); print('held', flush=True); "
        "sys.stdin.read()")], env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DirectoryInUse, match=f"pid {holder.pid}: "):
            StateLock.take(path, "x")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    StateLock.take(path, "x").release()


def test_a_quarantine_file_elsewhere_is_locked_too(tmp_path: Path):
    elsewhere = tmp_path / "state" / "holds.json"
    settings = parse_settings({"backends": [BACKEND], "recorder": {"dir": str(tmp_path / "r")},
                               "guard": {"quarantine": {"file": str(elsewhere)}}}, {})
    locks = hold_state(settings)
    assert [lock.path for lock in locks] == [tmp_path / "r" / LOCK_NAME,
                                            elsewhere.with_name("holds.json.lock")]
    other = parse_settings({"backends": [BACKEND], "recorder": {"dir": str(tmp_path / "s")},
                            "guard": {"quarantine": {"file": str(elsewhere)}}}, {})
    with pytest.raises(DirectoryInUse, match=f"guard.quarantine.file {elsewhere} is in use"):
        hold_state(other)
    # Redis: no file to lock. (And the refusal above let the directory go, or this fails.)
    redis = other.model_copy(update={"guard": other.guard.model_copy(update={
        "quarantine": other.guard.quarantine.model_copy(update={"store": "redis"})})})
    held = hold_state(redis)
    assert len(held) == 1
    held[0].release()
    for lock in locks:
        lock.release()
