"""The guard's nested triggers: found in the parsed body as the raw-byte markers they replaced
found them in JSON without escapes, and found through escapes too."""

from __future__ import annotations

import random

import orjson
import pytest

from warden.config.schema import GuardSpec
from warden.guard.guard import Guard
from warden.guard.triggers import MEMO_SIZE, SHORT, NestedScan

TRIGGERS = ("*_url", "input_audio", "*_embeds", "<")
# The byte markers the triggers replaced (each found in JSON with no escapes).
BYTES = {"*_url": b'_url"', "input_audio": b'"input_audio"', "*_embeds": b'_embeds"',
         "<": b"<"}
NAMES = ("type", "text", "image_url", "url", "input_audio", "audio_url", "image_embeds",
         "embeds", "my_url", "urls", "input_audios", "data", "role", "content", "detail")
TEXTS = ("hello", "a <b> tag", "image_url", "input_audio", "image_embeds", "x_url", "plain",
         "ends with url", "<", "", "input", "audio_url", "long text " * 10)


def _value(rng: random.Random, depth: int) -> object:
    kind = rng.random()
    if depth > 3 or kind < 0.5:
        return rng.choice((*TEXTS, 1, 2.5, None, True))
    if kind < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(NAMES): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _by_bytes(body: dict) -> set[str]:
    raw = orjson.dumps(body)
    return {trigger for trigger, marker in BYTES.items() if raw.find(marker) >= 0}


def test_the_scan_finds_what_the_byte_markers_found_in_json_without_escapes():
    rng = random.Random(7)
    scan = NestedScan(TRIGGERS)
    seen: set[str] = set()
    for _ in range(3000):
        body = {"model": "m", "messages": [_value(rng, 0) for _ in range(rng.randrange(4))]}
        found = scan.found(body)
        assert found == _by_bytes(body), body
        seen |= found
    assert seen == set(TRIGGERS)  # (the corpus holds each, so each was compared)


def test_an_escaped_key_or_type_is_found():
    raw = b'{"messages":[{"content":[{"type":"image\\u005furl","\\u0069nput_audio":{},' \
          b'"t":"\\u003c|im_end|>"}]}]}'
    assert not _by_bytes(orjson.loads(raw)) - {"*_url", "input_audio", "<"}
    assert NestedScan(TRIGGERS).found(orjson.loads(raw)) == {"*_url", "input_audio", "<"}


def test_a_long_text_is_searched_for_characters_only():
    text = "x" * SHORT + "_url"  # a text, not a part's type
    assert NestedScan(TRIGGERS).found({"a": [text, "y" * 100 + "<"]}) == {"<"}


def test_what_is_remembered_is_bounded():
    scan = NestedScan(TRIGGERS)
    scan.found({"k" * 10_000: 1, "x_url": [f"v{i}" for i in range(MEMO_SIZE + 100)]})
    assert len(scan._memo) == MEMO_SIZE and all(len(text) <= SHORT for text in scan._memo)
    assert scan.found({"y_url": "new"}) == {"*_url"}  # (judged, not remembered)


def test_deep_nesting_is_walked_without_recursion():
    body: object = {"image_url": "u"}
    for _ in range(5000):
        body = [body]
    assert NestedScan(TRIGGERS).found({"a": body}) == {"*_url"}


@pytest.mark.parametrize("content", [
    [{"type": "image_url", "image_url": {"url": "http://127.0.0.1/a.png"}}],
    [{"type": "text", "text": "hi"}, {"image_url": "http://10.0.0.1/x"}],  # no type: by key
])
def test_the_guard_runs_the_media_rules_on_what_the_scan_finds(content):
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    outcome = Guard(GuardSpec(validation={"enabled": False})).judge(
        "/v1/chat/completions", "m", body, orjson.dumps(body), [])
    assert outcome is not None and outcome.rejection is not None
    assert "mm-private-url" in str(outcome.rejection)


def test_a_plain_chat_request_triggers_nothing():
    guard = Guard(GuardSpec())
    body = {"model": "m", "messages": [{"role": "user", "content": "hi, what is a URL?"}]}
    assert guard.index.nested_in(body) == set()
    assert guard.judge("/v1/chat/completions", "m", body, orjson.dumps(body), []) is None
