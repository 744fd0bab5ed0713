"""The request's parse at admission: what Content-Type is taken for JSON (any case, with
parameters, as a prefix: what `startswith` on the lower-cased value took before)."""

from __future__ import annotations

import pytest

from warden.admission.parse import parse_request
from warden.config.loader import parse_settings
from warden.edge.request import HttpRequest
from warden.errors import ModelNotFound, UnsupportedMediaType
from warden.fleet.registry import BackendRegistry

BACKENDS = BackendRegistry(parse_settings(
    {"backends": [{"name": "b", "url": "http://127.0.0.1:9", "models": ["m"]}]}, {}))
BODY = b'{"model": "m", "messages": []}'


def request(content_type: bytes | None) -> HttpRequest:
    fields = {} if content_type is None else {b"content-type": content_type}
    return HttpRequest(b"POST", b"/v1/chat/completions", fields, [], BODY, True, "10.0.0.1", 1.0)


@pytest.mark.parametrize("content_type", [
    b"application/json", b"Application/JSON", b"application/json; charset=utf-8",
    b"APPLICATION/JSON;charset=UTF-8", b"application/json-seq"])
def test_json_content_types_are_parsed(content_type):
    assert content_type.lower().startswith(b"application/json")  # (the rule as it was)
    assert parse_request(request(content_type), BACKENDS) == ("m", False, {
        "model": "m", "messages": []})


@pytest.mark.parametrize("content_type", [
    None, b"", b"text/plain", b"application/jso", b"application/x-json", b" application/json",
    b"application/ json"])
def test_other_content_types_are_refused(content_type):
    assert not (content_type or b"").lower().startswith(b"application/json")
    with pytest.raises(UnsupportedMediaType):
        parse_request(request(content_type), BACKENDS)


def test_a_model_name_longer_than_any_fleets_is_not_found_and_not_repeated_whole():
    """It would go whole into logs, spans and the error message (a body of 100 MiB may be one
    model name)."""
    name = "m" * 1025
    body = b'{"model": "%s", "messages": []}' % name.encode()
    with pytest.raises(ModelNotFound) as refused:
        parse_request(HttpRequest(b"POST", b"/v1/chat/completions",
                                  {b"content-type": b"application/json"}, [], body, True,
                                  "10.0.0.1", 1.0), BACKENDS)
    assert len(refused.value.message) < 200 and "1025 characters" in refused.value.message
