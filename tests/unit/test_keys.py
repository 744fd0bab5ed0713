"""API keys and tenants: the config's forms, look-ups, grants, and what a request presents."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from warden.admin.routes import is_loopback
from warden.config.auth_schema import AuthSpec
from warden.tenancy.keys import KeyRing, ProvenKey, key_hash, new_key, presented_key

KEY = "wk-unit-test-key-0000000000000001"


def spec(**auth) -> AuthSpec:
    return AuthSpec.model_validate(auth)


def test_new_keys_are_long_random_and_hash_to_the_configured_form():
    first, second = new_key(), new_key()
    assert first != second and first.startswith("wk-") and len(first) == 46
    assert key_hash(first).startswith("sha256:") and len(key_hash(first)) == 71


def test_a_key_is_found_by_its_hash_or_its_value_and_nothing_else():
    ring = KeyRing.clients(spec(keys=[{"id": "a", "hash": key_hash(KEY)},
                                      {"id": "b", "value": KEY + "b"}]))
    assert ring.find(KEY.encode()).id == "a"
    assert ring.find((KEY + "b").encode()).id == "b"
    for wrong in (b"", KEY[:-1].encode(), KEY.encode() + b"\x00", b"\xff" * 40, b"k" * 10_000):
        assert ring.find(wrong) is None


def test_a_connections_memo_skips_the_hash_of_the_same_bytes_only_and_follows_the_ring():
    ring = KeyRing.clients(spec(keys=[{"id": "a", "value": KEY},
                                      {"id": "b", "value": KEY + "b"}]))
    proven = ProvenKey()
    assert ring.find(KEY[:-1].encode() + b"x", proven) is None
    assert proven.presented == b""                       # (a key not found: not remembered)
    assert ring.find(KEY.encode(), proven).id == "a"
    assert proven.presented == KEY.encode()
    for wrong in (KEY[:-1].encode() + b"x", b"", KEY.encode() + b"\x00"):
        assert ring.find(wrong, proven) is None
        assert proven.presented == KEY.encode()          # (a wrong guess changes nothing)
    a_digest = proven.digest
    assert ring.find((KEY + "b").encode(), proven).id == "b"   # (another key: remembered)
    b_digest = proven.digest
    assert b_digest != a_digest
    # The same bytes as remembered: the ring is asked for the remembered digest, not a new
    # hash (a memo doctored to b's digest finds b), and the ring still decides.
    proven.presented, proven.digest = KEY.encode(), b_digest
    assert ring.find(KEY.encode(), proven).id == "b"
    ring.remove(b_digest)
    assert ring.find(KEY.encode(), proven) is None       # (gone from the ring: refused)
    assert ring.find(KEY.encode()).id == "a"


def test_grants_of_the_key_and_its_tenant_both_apply():
    ring = KeyRing.clients(spec(
        tenants={"t": {"models": ["llama-*", "qwen-7b"], "priority": 5}},
        keys=[{"id": "k", "value": KEY, "tenant": "t", "models": ["llama-3*", "qwen-7b"]},
              {"id": "free", "value": KEY + "x"}]))
    key = ring.find(KEY.encode())
    assert key.tenant_name == "t" and key.effective_priority == 5
    assert [key.allows(m) for m in ("llama-3-8b", "llama-2", "qwen-7b", "qwen-72b")] == \
        [True, False, True, False]
    assert ring.find((KEY + "x").encode()).allows("anything")


@pytest.mark.parametrize("auth, says", [
    ({"keys": [{"id": "a"}]}, "exactly one of hash, value"),
    ({"keys": [{"id": "a", "hash": "md5:00", "value": None}]}, "sha256:<64"),
    ({"keys": [{"id": "a", "value": "short"}]}, "16 to 256"),
    ({"keys": [{"id": "a", "value": KEY, "tenant": "nobody"}]}, "not in auth.tenants"),
    ({"keys": [{"id": "a", "value": KEY}, {"id": "a", "value": KEY + "2"}]}, "used twice"),
    ({"keys": [{"id": "a", "value": KEY}, {"id": "b", "hash": key_hash(KEY)}]},
     "keys a, b are one key"),
    ({"keys": [{"id": "a", "value": KEY}], "admin_keys": [{"id": "root", "value": KEY}]},
     "keys a, root are one key"),
    ({"mode": "required"}, "would refuse every request"),
    ({"keys": [{"id": "a", "value": KEY, "expires": "2027-01-01T00:00:00"}]}, "time zone"),
])
def test_config_mistakes_are_named(auth, says):
    with pytest.raises(ValidationError) as refused:
        spec(**auth)
    assert says in str(refused.value)


@pytest.mark.parametrize("authorization, api_key, presented", [
    (b"Bearer abc", None, b"abc"),
    (b"bearer   abc  ", None, b"abc"),
    (b"Basic abc", None, None),
    (b"Bearer", None, None),
    (None, b"abc", b"abc"),
    (None, None, None),
    (b"Bearer abc", b"other", b"abc"),  # (the Authorization header wins)
    (b"Bearer  abc", None, b"abc"),
    (b"Bearer abc\t", None, b"abc"),
    (b"Bearer a b", None, b"a b"),
    (b"Bearer ", None, None),
    (b"Bearerabc", None, None),
])
def test_what_a_request_presents(authorization, api_key, presented):
    assert presented_key(authorization, api_key) == presented


@pytest.mark.parametrize("ip, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.7", False), ("::ffff:10.0.0.7", False), ("", False), ("unix", False),
])
def test_loopback_is_what_the_admin_api_answers_without_keys(ip, loopback):
    assert is_loopback(ip) is loopback


def test_an_isolated_tenants_salt_is_its_own_and_needs_the_secret():
    auth = {"tenants": {"a": {"isolate_cache": True}, "b": {"isolate_cache": True}, "c": {}},
            "keys": [{"id": t, "value": KEY + t, "tenant": t} for t in "abc"]}
    ring = KeyRing.clients(spec(**auth, cache_salt_secret="s" * 16))
    salts = [ring.find((KEY + t).encode()).tenant.cache_salt for t in "abc"]
    assert salts[0] != salts[1] and salts[2] is None and salts[0].startswith("t-")
    again = KeyRing.clients(spec(**auth, cache_salt_secret="s" * 16))
    assert again.find((KEY + "a").encode()).tenant.cache_salt == salts[0]  # (every replica)
    other = KeyRing.clients(spec(**auth, cache_salt_secret="t" * 16))
    assert other.find((KEY + "a").encode()).tenant.cache_salt != salts[0]
    with pytest.raises(ValidationError, match=r"auth\.cache_salt_secret"):
        spec(**auth)
