"""An incident's files are written whole or not at all, and only the newest are kept."""

from __future__ import annotations

import logging

import orjson
import pytest

from warden.forensics.incident_files import KEEP_INCIDENTS, write_incident
from warden.forensics.incidents import IncidentDetector


def test_an_incident_and_its_metrics_are_written_whole(tmp_path):
    write_incident(tmp_path, "20261206T000000-n1", {"id": "x", "suspects": []}, "up 0\n")
    assert orjson.loads((tmp_path / "incident-20261206T000000-n1.json").read_bytes())["id"] == "x"
    assert (tmp_path / "metrics-20261206T000000-n1.txt").read_text() == "up 0\n"
    assert not list(tmp_path.glob("*.partial"))


def test_a_write_that_fails_leaves_no_file(tmp_path):
    write_incident(tmp_path, "a", {"id": "a"}, None)
    # (The write's temporary name is taken by a directory: the write fails, as on a full disk.)
    (tmp_path / "incident-b.json.tmp").mkdir()
    with pytest.raises(OSError):
        write_incident(tmp_path, "b", {"id": "b"}, None)
    assert [p.name for p in tmp_path.glob("incident-*.json")] == ["incident-a.json"]


def test_the_detector_says_an_incident_it_cannot_write_and_carries_on(tmp_path, caplog):
    (tmp_path / "incidents").write_text("not a directory")
    detector = IncidentDetector(tmp_path, lambda backend: [])
    detector.reachable("n1")
    with caplog.at_level(logging.ERROR, "warden.incidents"):
        detector.connect_failed("n1", 1.0, "connection refused")  # (no loop: written at once)
    assert "not written" in caplog.text and detector.open_records() == []
    detector.alive_again("n1", "health check passed")
    detector.connect_failed("n1", 2.0, "connection refused")  # the next death still counts
    assert detector.counts()[0] == {"n1": 2}


def test_only_the_newest_incidents_are_kept(tmp_path):
    for n in range(KEEP_INCIDENTS + 2):
        write_incident(tmp_path, f"{n:04d}", {"n": n}, None if n % 2 else "m\n")
    kept = sorted(p.name for p in tmp_path.glob("incident-*.json"))
    assert len(kept) == KEEP_INCIDENTS and kept[0] == "incident-0002.json"
    assert not (tmp_path / "metrics-0000.txt").exists()
    assert (tmp_path / "metrics-0002.txt").exists()
