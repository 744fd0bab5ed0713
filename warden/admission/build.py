"""The admission chain's stages, in order, from one config (built with each `Runtime`)."""

from __future__ import annotations

from warden.admission.affinity import AffinityStage
from warden.admission.auth import AuthStage
from warden.admission.guard_stage import GuardStage
from warden.admission.limits import AddressLimitStage, LimitStage
from warden.admission.stage import Stage
from warden.config.schema import Settings
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard
from warden.routing.protocol import RoutingPolicy
from warden.tenancy.budget import Prices
from warden.tenancy.keys import KeyRing
from warden.tenancy.limiter import Limiter


def build_stages(settings: Settings, guard: Guard | None, backends: BackendRegistry,
                 policy: RoutingPolicy, keys: KeyRing | None = None,
                 limiter: Limiter | None = None) -> tuple[Stage, ...]:
    """The client address's limit, API keys (auth.mode required) and their limits, the
    guard (when on), then the affinity keys (for a policy that reads them): a request nobody
    vouches for costs the guard nothing, one the guard refuses costs no routing key. `keys`:
    the gateway's client keys, which outlive this runtime (tenancy.client_keys; None: the
    config's own, built here); `limiter`: the gateway's (None: no limits)."""
    stages: list[Stage] = []
    per_ip = settings.rate_limits.per_ip_rpm
    if limiter is not None and per_ip is not None:
        stages.append(AddressLimitStage(limiter, per_ip))
    if settings.auth.mode == "required":
        stages.append(AuthStage(keys if keys is not None else KeyRing.clients(settings.auth)))
        if limiter is not None:
            stages.append(LimitStage(limiter, settings.rate_limits.default_max_tokens,
                                     Prices(settings.rate_limits.prices)))
    if guard is not None:
        stages.append(GuardStage(guard, backends))
    if policy.wants_prefix or policy.wants_session:
        stages.append(AffinityStage(settings.routing, policy.wants_prefix, policy.wants_session))
    return tuple(stages)
