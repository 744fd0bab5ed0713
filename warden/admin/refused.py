"""Paths the gateway answers itself because it never forwards them: vLLM's endpoints that
change the server for every client rather than answer one.

Loading and unloading LoRA adapters (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`,
vLLM's --enable-lora with VLLM_ALLOW_RUNTIME_LORA_UPDATING) change what every client of
the backend is served, and a malformed adapter loaded this way crashed the engine on the
next request that used it (vllm-project/vllm#11727, fixed in 0.7.0). A client of the gateway
reaches no such endpoint: 403 in the OpenAI error envelope, whatever the method. Adapters are
loaded on the backends by their operators; a gateway admin route (under /admin/, where the
gateway's own management lives) may later load them across the fleet.
"""

from __future__ import annotations

from warden.errors import ClientError, Forbidden, NotFound

RULE = "lora-admin-block"
SOURCE = "vllm-project/vllm#11727"
REFUSED = frozenset({"/v1/load_lora_adapter", "/v1/unload_lora_adapter"})


def unknown_path(path: str) -> ClientError:
    """The error for a path the gateway has no route for: 403 for those it refuses to
    forward, else 404."""
    if path in REFUSED:
        return Forbidden(f"{path} is not served to clients: loading or unloading a LoRA adapter "
                         "changes what every client is served, and a malformed adapter can "
                         f"crash the engine ({RULE}; {SOURCE})")
    return NotFound(f"Unknown path: {path}")
