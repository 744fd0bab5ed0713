"""The admission chain's stages, in order, from one config (built with each `Runtime`)."""

from __future__ import annotations

from warden.admission.affinity import AffinityStage
from warden.admission.guard_stage import GuardStage
from warden.admission.stage import Stage
from warden.config.schema import Settings
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard
from warden.routing.protocol import RoutingPolicy


def build_stages(settings: Settings, guard: Guard | None, backends: BackendRegistry,
                 policy: RoutingPolicy) -> tuple[Stage, ...]:
    """The guard (when on), then the affinity keys (for a policy that reads them): a request
    the guard refuses costs no key."""
    stages: list[Stage] = []
    if guard is not None:
        stages.append(GuardStage(guard, backends))
    if policy.wants_prefix or policy.wants_session:
        stages.append(AffinityStage(settings.routing, policy.wants_prefix, policy.wants_session))
    return tuple(stages)
