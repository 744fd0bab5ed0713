"""The client keys of the config and the key store, merged in the one ring the AuthStage reads:
changes one key at a time, a config reload that keeps the stored keys and re-reads their
tenants' grants, ids unique across both, a stored key left out rather than widened. And the
settings of the store."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from warden.config.auth_schema import AuthSpec, StoredKeySpec
from warden.config.limits_schema import LimitValues
from warden.tenancy.client_keys import ClientKeys, StoredKey

CONFIG_KEY = "wk-unit-config-key-0000000000000001"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(**auth) -> AuthSpec:
    return AuthSpec.model_validate({
        "tenants": {"t": {"models": ["llama-*"], "priority": 4}},
        "keys": [{"id": "cfg", "value": CONFIG_KEY}], **auth})


def stored(key_id: str, secret: str, version: str = "1", **fields) -> StoredKey:
    row = {"tenant": None, "models": None, "priority": None, "expires": None,
           "metadata": {}, "limits": None, "created": NOW, "revoked": None, "rotated": None,
           **fields}
    return StoredKey(id=key_id, digest=hashlib.sha256(secret.encode()).digest(),
                     version=version, **row)


def found(keys: ClientKeys, secret: str) -> str | None:
    key = keys.ring.find(secret.encode())
    return key.id if key is not None else None


def test_stored_keys_join_the_config_keys_one_at_a_time():
    keys = ClientKeys()
    keys.use_config(spec())
    keys.put(stored("s", "secret-s", tenant="t", limits={"rpm": 1}))
    assert found(keys, CONFIG_KEY) == "cfg" and found(keys, "secret-s") == "s"
    key = keys.ring.find(b"secret-s")
    assert key.tenant_name == "t" and key.effective_priority == 4 \
        and key.limits == LimitValues(rpm=1)
    assert key.allows("llama-3") and not key.allows("qwen")

    keys.put(stored("s", "secret-rotated", version="2", tenant="t", rotated=NOW))
    assert found(keys, "secret-s") is None and found(keys, "secret-rotated") == "s"
    keys.put(stored("s", "secret-rotated", version="3", revoked=NOW))  # (a revoked row)
    assert found(keys, "secret-rotated") is None and "s" not in keys.stored
    keys.put(stored("t2", "secret-t2"))
    keys.drop("t2")
    keys.drop("never-there")
    assert found(keys, "secret-t2") is None and found(keys, CONFIG_KEY) == "cfg"


def test_a_config_reload_keeps_the_stored_keys_under_the_new_grants():
    keys = ClientKeys()
    keys.use_config(spec())
    keys.replace_stored([stored("s", "secret-s", tenant="t"), stored("free", "secret-f")])
    keys.use_config(spec(tenants={"t": {"models": ["qwen"]}}, keys=[]))
    assert found(keys, CONFIG_KEY) is None  # (the config's key went with its config)
    assert keys.ring.find(b"secret-s").allows("qwen")  # (its tenant's new grant)
    assert not keys.ring.find(b"secret-s").allows("llama-3")
    assert found(keys, "secret-f") == "free"


def test_a_stored_key_is_left_out_rather_than_widened_or_doubled():
    keys = ClientKeys()
    keys.use_config(spec())
    keys.replace_stored([stored("s", "secret-s", tenant="t"), stored("free", "secret-f")])
    keys.use_config(spec(tenants={}, keys=[{"id": "free", "value": CONFIG_KEY}]))
    assert found(keys, "secret-s") is None and found(keys, "secret-f") is None
    assert found(keys, CONFIG_KEY) == "free"
    assert set(keys.left_out) == {"s", "free"} and set(keys.stored) == {"s", "free"}
    keys.use_config(spec())  # the tenant back, the id free again: both back
    assert found(keys, "secret-s") == "s" and found(keys, "secret-f") == "free"
    assert keys.left_out == {}


def test_a_full_read_replaces_every_stored_key_and_keys_share_their_models():
    keys = ClientKeys()
    keys.use_config(spec())
    keys.replace_stored([stored("a", "secret-a"), stored("b", "secret-b")])
    keys.replace_stored([stored(f"k{n}", f"secret-{n}", models=["llama-*"])
                         for n in range(3)])
    assert found(keys, "secret-a") is None and found(keys, "secret-1") == "k1"
    held = [keys.ring.find(f"secret-{n}".encode()) for n in range(3)]
    assert len({id(key.models) for key in held}) == 1


def test_the_store_settings_and_a_stored_key_body():
    store = AuthSpec.model_validate({"mode": "required", "store": {
        "url": "postgresql://warden@db:5432/gateway"}}).store
    assert store.schema_name == "warden" and store.refresh == 60 and store.timeout == 5
    for wrong, says in [({"url": "host=db dbname=x"}, "not a PostgreSQL URL"),
                        ({"url": "postgresql://db/x", "schema": "Drop Table"}, "pattern"),
                        ({"url": "postgresql://db/x", "refresh": "0s"}, "more than 0")]:
        with pytest.raises(ValidationError) as refused:
            AuthSpec.model_validate({"store": wrong})
        assert says in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        AuthSpec.model_validate({"mode": "required"})
    assert "no auth.store" in str(refused.value)
    body = StoredKeySpec.model_validate({"id": "k", "limits": {"rpm": 5, "tpm": 100}})
    assert body.limits == LimitValues(rpm=5, tpm=100) and body.models is None
    with pytest.raises(ValidationError):  # (limits are checked as the config's are)
        StoredKeySpec.model_validate({"id": "k", "limits": {"requests_per_minute": 5}})
