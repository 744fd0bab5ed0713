"""`warden audit` as a user runs it: times, verdicts and directories that are not what it
reads get one line and exit 2 (never a silently empty answer); a reader that leaves early
(`| head`) ends it quietly; a replay that got no answer says so in its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.procs import free_port_block
from warden.record.render import iso_wall


def warden(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)


def _records(directory: Path, ages: list[float]) -> Path:
    """One complete request per age (seconds ago), oldest first, as the recorder writes them."""
    directory.mkdir(exist_ok=True)
    now = time.time()
    lines = []
    for n, age in enumerate(ages):
        received = iso_wall(now - age)
        body = json.dumps({"model": "m", "prompt": "hi", "max_tokens": 1})
        lines.append({"type": "start", "id": f"req-{n}", "received": received, "model": "m",
                      "endpoint": "/v1/completions", "method": "POST", "body": body,
                      "headers": {"content-type": "application/json"}})
        lines.append({"type": "end", "id": f"req-{n}", "received": received, "status": 200,
                      "verdict": "complete", "duration": 0.01})
    (directory / "warden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return directory


def _ids(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines()[1:]]


def test_since_takes_durations_and_iso_times(tmp_path: Path):
    records = _records(tmp_path / "records", [7200.0, 60.0])
    recent = warden("audit", "search", "--dir", str(records), "--since", "10m")
    assert recent.returncode == 0, recent.stderr
    assert _ids(recent) == ["req-1"]
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 3600))
    iso = warden("audit", "search", "--dir", str(records), "--until", hour_ago)
    assert _ids(iso) == ["req-0"]


@pytest.mark.parametrize("value", ["10x", "yesterday", "2026-13-45"])
def test_a_time_it_cannot_read_is_one_line_and_exit_2(tmp_path: Path, value: str):
    records = _records(tmp_path / "records", [60.0])
    result = warden("audit", "search", "--dir", str(records), "--since", value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"warden audit search: --since: not a time: {value!r} (an ISO 8601 time such as "
        "2026-05-01T12:00:00Z, or a duration ago such as 10m, 2h, 1d)"]


def test_an_unknown_verdict_is_refused_with_the_valid_ones(tmp_path: Path):
    records = _records(tmp_path / "records", [60.0])
    result = warden("audit", "search", "--dir", str(records), "--verdict", "bogus")
    assert result.returncode == 2
    assert "unknown verdict 'bogus' (one of complete, client_abort, upstream_error" \
        in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    ok = warden("audit", "search", "--dir", str(records), "--verdict", "complete")
    assert _ids(ok) == ["req-0"]


def test_a_missing_directory_is_said(tmp_path: Path):
    result = warden("audit", "search", "--dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"warden audit search: {tmp_path / 'nowhere'} (--dir) is "
                                     "not a directory: no records there")
    incidents = warden("incidents", "list", "--dir", str(tmp_path / "nowhere"))
    assert incidents.returncode == 2 and "not a directory" in incidents.stderr


def test_a_reader_that_leaves_early_ends_it_quietly(tmp_path: Path):
    records = _records(tmp_path / "records", [60.0] * 3000)  # ~400 KB of lines: a full pipe
    proc = subprocess.Popen([sys.executable, "-m", "warden", "audit", "search", "--dir",
                             str(records)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("received")  # as `| head -1` reads it
    proc.stdout.close()
    errors = proc.stderr.read()
    assert proc.wait(timeout=30) == 141  # as a shell reports a process ended by SIGPIPE
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_replay_with_requests_unanswered_exits_non_zero(tmp_path: Path):
    records = _records(tmp_path / "records", [60.0, 30.0])
    nobody = f"http://127.0.0.1:{free_port_block(1)}"  # nothing listens there
    result = warden("audit", "replay", "--dir", str(records), "--target", nobody, "--fast")
    assert result.returncode == 1
    assert f"2 replayed to {nobody}: 2 without an answer" in result.stderr


@pytest.mark.parametrize("flags, says", [
    (["--target", "10.0.0.5:8001"], "'10.0.0.5:8001' is not http://HOST[:PORT]"),
    (["--target", "https://gw.example"], "is not http://HOST[:PORT] (replays go over plain"),
    (["--target", "http://h:99999"], "is not http://HOST[:PORT]"),
    (["--speed", "0"], "argument --speed: '0' is not a number above 0"),
    (["--fast", "--concurrency", "0"], "argument --concurrency: '0' is not a whole number"),
])
def test_replay_arguments_that_would_go_astray_or_hang_are_refused(tmp_path: Path, flags, says):
    """A target read wrong sends recorded requests (known killers among them) elsewhere:
    `10.0.0.5:8001` as a URL is port 80 on 127.0.0.1; speed 0 divided by zero; concurrency
    0 waited for ever."""
    records = _records(tmp_path / "records", [60.0])
    if "--target" not in flags:
        flags = ["--target", "http://127.0.0.1:9", *flags]
    result = warden("audit", "replay", "--dir", str(records), *flags)
    assert result.returncode == 2 and says in result.stderr
    assert "Traceback" not in result.stderr
