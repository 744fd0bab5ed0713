"""The admin API's live views without a browser: incidents listed from the detector's files
(newest first, a damaged one skipped) and exported, hostile ids refused; the page on the
admin listener only; the guard's decisions as requests are refused."""

from __future__ import annotations

import json

import pytest

from tests.harness import GatewayThread, http

JSON = {"Content-Type": "application/json"}


def incident(at: str, backend: str) -> dict:
    return {"id": f"{at}-{backend}", "backend": backend, "at": at, "detected_by": "x",
            "engine_crash": False, "signals": [], "suspects": [{"id": "r1", "score": 3}],
            "tenants": []}


@pytest.fixture
def written(tmp_path, fleet):
    """A gateway whose recorder's directory holds two incidents and a damaged file."""
    folder = tmp_path / "incidents"
    folder.mkdir()
    for record in (incident("20260101T000000", "a"), incident("20260102T000000", "b")):
        (folder / f"incident-{record['id']}.json").write_text(json.dumps(record))
    (folder / "incident-20260103T000000-c.json").write_text('{"id": "cut sh')
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    gw = GatewayThread({"backends": fleet.backends_config(),
                        "recorder": {"dir": str(tmp_path), "min_free_disk": 0}})
    yield gw
    gw.stop()


def test_incidents_are_listed_newest_first_and_exported(written):
    gw = written
    status, _, body = http("GET", f"{gw.url}/admin/incidents")
    assert status == 200
    listed = json.loads(body)["incidents"]
    assert [i["id"] for i in listed] == ["20260102T000000-b", "20260101T000000-a"]
    assert all(i["open"] is False for i in listed)
    status, headers, body = http("GET", f"{gw.url}/admin/incidents/20260101T000000-a")
    assert status == 200 and json.loads(body)["backend"] == "a"
    assert headers["content-disposition"] == \
        'attachment; filename="incident-20260101T000000-a.json"'
    for hostile in ("..%2fsecret", "../secret", "nope", "a%22b"):
        status, _, body = http("GET", f"{gw.url}/admin/incidents/{hostile}")
        assert status == 404 and b"secret\": 1" not in body
        assert json.loads(body)["error"]["code"] == "not_found"


def test_the_guard_decisions_name_the_refused_requests(gateway):
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
            "structured_outputs": {}}  # normalized by the guard (enforcing by default)
    status, _, _ = http("POST", f"{gateway.url}/v1/chat/completions", json.dumps(body).encode(),
                        {**JSON, "X-Request-Id": "guarded-1"})
    assert status == 200
    status, _, answer = http("GET", f"{gateway.url}/admin/guard/recent")
    decisions = json.loads(answer)["decisions"]
    mine = next(d for d in decisions if d["id"] == "guarded-1")
    assert mine["outcome"] == "changed" and mine["model"] == "sim-model"
    assert any("so-no-constraint" in note for note in mine["notes"])
    status, _, answer = http("GET", f"{gateway.url}/admin/stats")
    stats = json.loads(answer)
    assert status == 200 and sum(s["requests"] for s in stats["series"]) >= 1
    assert stats["in_flight"] == 0


def test_the_page_is_served_on_the_admin_listener_only(fleet):
    gw = GatewayThread({"backends": fleet.backends_config(), "admin_listen": "127.0.0.1:0"})
    try:
        admin = f"http://127.0.0.1:{gw.gateway.admin_port}"
        assert http("GET", f"{gw.url}/admin/")[0] == 404
        assert http("GET", f"{gw.url}/admin/static/app.js")[0] == 404
        status, headers, body = http("GET", f"{admin}/admin/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'<script src="/admin/static/app.js"' in body
        status, headers, _ = http("GET", f"{admin}/admin/static/app.js")
        assert status == 200 and headers["x-content-type-options"] == "nosniff"
        assert headers["content-type"].startswith("text/javascript")
        assert http("POST", f"{admin}/admin/")[0] == 405
    finally:
        gw.stop()
