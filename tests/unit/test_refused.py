"""Paths the gateway never forwards: LoRA adapter loading is refused with 403 in the OpenAI
envelope, naming why; any other unknown path is a 404."""

from __future__ import annotations

import orjson
import pytest

from warden.admin.refused import unknown_path


@pytest.mark.parametrize("path", ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"])
def test_lora_adapter_endpoints_are_refused(path):
    error = unknown_path(path)
    body = orjson.loads(error.envelope())["error"]
    assert error.status == 403 and body["code"] == "forbidden"
    assert path in body["message"] and "lora-admin-block" in body["message"]
    assert "vllm-project/vllm#11727" in body["message"]


@pytest.mark.parametrize("path", ["/v1/load_lora_adapterx", "/v1/lora", "/nope"])
def test_other_unknown_paths_are_not_found(path):
    error = unknown_path(path)
    assert error.status == 404 and error.message == f"Unknown path: {path}"
