"""What `warden audit replay` sends of a recorded request: the body its backend received,
nothing for one the gateway refused (unless asked), and never one id twice in a run."""

from __future__ import annotations

from warden.audit.reader import Request
from warden.audit.replay import _suffixes, request_bytes


def recorded(rid: str, *, backend: str | None = "b1", status: int = 200,
             **start: object) -> Request:
    return Request(rid, start={"type": "start", "id": rid, "endpoint": "/v1/completions",
                               "body": '{"prompt":"as sent"}', **start},
                   end={"type": "end", "id": rid, "backend": backend, "status": status})


def test_the_body_sent_is_the_one_its_backend_received():
    plain = request_bytes(recorded("a"), "t:1")
    rewritten = request_bytes(recorded("b", forwarded_body='{"prompt":"repaired"}'), "t:1")
    assert isinstance(plain, tuple) and plain[1] == b'{"prompt":"as sent"}'
    assert isinstance(rewritten, tuple) and rewritten[1] == b'{"prompt":"repaired"}'
    assert b"content-length: 21\r\n" in rewritten[0]


def test_a_request_the_gateway_refused_is_skipped_unless_asked_for():
    refused = recorded("killer", backend=None, status=400)
    assert request_bytes(refused, "t:1") == \
        "never reached a backend (answered 400 by the gateway)"
    assert isinstance(request_bytes(refused, "t:1", include_refused=True), tuple)
    unfinished = Request("in-flight", start=recorded("in-flight").start)   # (no end record)
    assert isinstance(request_bytes(unfinished, "t:1"), tuple)


def test_an_id_met_again_in_a_run_gets_a_replay_id_of_its_own():
    run = [recorded("x"), recorded("y"), recorded("x"), recorded("x")]
    assert _suffixes(run) == [".replay", ".replay", ".replay.2", ".replay.3"]
    head = request_bytes(run[2], "t:1", ".replay.2")
    assert isinstance(head, tuple) and b"\r\nx-request-id: x.replay.2\r\n" in head[0]


def test_one_whose_forwarded_body_was_not_recorded_is_not_sent_with_the_clients():
    low = recorded("low", forwarded_body_omitted="low disk")
    assert request_bytes(low, "t:1") == \
        "the body its backend received was not recorded (low disk)"
