"""API keys as an admission stage (auth.mode: required): who asks, and whether they may use
the model. First in the chain: nothing else looks at a request nobody vouches for.

The client's credentials never reach a backend: they are taken out of the request's fields
here, whatever the verdict (a backend gets its own `api_key`, if it has one). Errors are
OpenAI's: 401 `invalid_api_key` (a missing key has no code, as OpenAI answers), 403 for a
model the key or its tenant may not use. A wrong key is not echoed back."""

from __future__ import annotations

import time

from warden.admission.parse import forward_changed
from warden.admission.stage import NativeStage, StageResult
from warden.edge.connection import HttpConnection
from warden.edge.contracts import ClientStream
from warden.edge.request import HttpRequest
from warden.errors import MissingApiKey, ModelNotAllowed, Unauthenticated
from warden.proxy.relay import Relay
from warden.tenancy.keys import ApiKey, KeyRing, ProvenKey, presented_key

MISSING = ("You didn't provide an API key. You need to provide your API key in an "
           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
MALFORMED = ("The Authorization header must be `Bearer YOUR_KEY` (or send the key alone in an "
             "api-key header).")
WRONG = "Incorrect API key provided."
EXPIRED = "This API key has expired."


class AuthStage(NativeStage):
    def __init__(self, keys: KeyRing):
        self._keys = keys

    def vouches(self, request: HttpRequest, client: HttpConnection) -> bool:
        """Before a large body is parsed (admission.chain): whether its key is one of the
        ring. Parsing takes the event loop's time and ~30 times the body's size in memory,
        which a request nobody vouches for must not cost. (The stage checks the key again,
        and the rest: the connection's last key found is kept, so that costs a comparison.)"""
        fields = request.fields
        presented = presented_key(fields.get(b"authorization"), fields.get(b"api-key"))
        return presented is not None and self._find(presented, client) is not None

    def _find(self, presented: bytes, client: ClientStream) -> ApiKey | None:
        """The ring's key `presented`, if any (the connection's last key found is kept, so a
        connection that sends one key costs a comparison)."""
        proven = client.proven_key
        if not isinstance(proven, ProvenKey):
            proven = client.proven_key = ProvenKey()
        return self._keys.find(presented, proven)

    def admit(self, relay: Relay, body: dict) -> StageResult:
        request = relay.request
        assert request is not None
        fields = request.fields
        # The credentials are never forwarded (see the module's docstring). (Look-ups and
        # `del`, which mypyc compiles; `dict.pop` would be a Python method call each.)
        authorization = fields.get(b"authorization")
        if authorization is not None:
            del fields[b"authorization"]
        api_key = fields.get(b"api-key")
        if api_key is not None:
            del fields[b"api-key"]
        if b"x-api-key" in fields:
            del fields[b"x-api-key"]
        presented = presented_key(authorization, api_key)
        if presented is None:
            if authorization is None and api_key is None:
                return MissingApiKey(MISSING)
            return Unauthenticated(MALFORMED)
        key = self._find(presented, relay.client)
        if key is None:
            return Unauthenticated(WRONG)
        if key.expires_at is not None and time.time() >= key.expires_at:
            return Unauthenticated(EXPIRED)
        relay.principal = key.id
        relay.tenant = key.tenant_name
        relay.grant = key
        model = relay.model or ""
        if not key.allows(model):
            return ModelNotAllowed(f"This API key may not use the model `{model}`.",
                                   param="model")
        changed = False
        priority = key.effective_priority
        if priority is not None and "priority" not in body:  # (the client's own wins)
            body["priority"] = priority
            changed = True
        tenant = key.tenant
        if tenant is not None and tenant.cache_salt is not None \
                and body.get("cache_salt") != tenant.cache_salt:  # (the tenant's own wins)
            body["cache_salt"] = tenant.cache_salt
            changed = True
        return forward_changed(relay, body) if changed else None
