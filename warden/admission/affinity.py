"""The routing policy's affinity keys, as an admission stage: only in the chain of a policy
that reads them (a look at the body costs time; most policies do not)."""

from __future__ import annotations

from warden.admission.stage import NativeStage, StageResult
from warden.config.schema import RoutingSpec
from warden.proxy.relay import Relay
from warden.routing.affinity import prefix_key, session_key


class AffinityStage(NativeStage):
    def __init__(self, routing: RoutingSpec, prefix: bool, session: bool):
        """`prefix`, `session`: which keys the policy reads."""
        self._prefix = prefix
        self._prefix_chars = routing.prefix_chars
        self._session = session
        spec = routing.session
        self._session_header = spec.header.lower().encode() \
            if spec is not None and spec.header else None
        self._session_user = spec is not None and spec.user_field

    def admit(self, relay: Relay, body: dict) -> StageResult:
        if self._prefix:
            relay.prefix_key = prefix_key(body, self._prefix_chars)
        if self._session:
            relay.session_key = self._session_key(relay, body)
        return None

    def _session_key(self, relay: Relay, body: dict) -> int | None:
        """The session a request belongs to: the configured header's value, else the body's
        `user` (when configured)."""
        request = relay.request
        assert request is not None
        if self._session_header is not None:
            value = request.header(self._session_header)
            if value:
                return session_key(value)
        if self._session_user:
            user = body.get("user")
            if type(user) is str and user:
                return session_key(user)
        return None
