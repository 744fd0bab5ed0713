"""The guard at the door: the crash-rule pack applied to each admitted request body.

Cost rule: most requests carry none of the keys any rule looks at, and the gateway skips them
with one set test (`keys.isdisjoint(body)`) before calling `check`. A rule acts only if some
backend serving the model runs a vLLM version it applies to (or one whose version is unknown).

Modes: `enforce` normalizes or rejects; `dry_run` only notes what it would have done (in the
request's audit record and the metrics), so it can be turned on in production safely; `off`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from warden.config.schema import GuardSpec
from warden.errors import InvalidRequest
from warden.guard.rules import NORMALIZE, REJECT, RULES, Rule


class GuardRejected(InvalidRequest):
    code = "rejected_by_guard"


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)   # e.g. "normalized so-no-constraint"
    changed: bool = False                            # the body was rewritten
    rejection: GuardRejected | None = None


class Guard:
    def __init__(self, spec: GuardSpec):
        self.enforce = spec.mode == "enforce"
        self.rules: tuple[Rule, ...] = tuple(r for r in RULES if r.id not in spec.disable)
        self.keys = frozenset().union(*(rule.keys for rule in self.rules))
        # (rule id, action, "enforce" | "dry_run") -> requests
        self.decisions: Counter[tuple[str, str, str]] = Counter()

    def check(self, body: dict, versions: Iterable[str | None]) -> Outcome:
        """Apply every rule that matches, in order; `body` is rewritten in place when a rule
        normalizes it (enforce mode). The first rejection stops the rest."""
        outcome = Outcome()
        versions = tuple(versions) or (None,)
        mode = "enforce" if self.enforce else "dry_run"
        for rule in self.rules:
            if rule.keys.isdisjoint(body) or not any(rule.applies_to(v) for v in versions):
                continue
            finding = rule.find(body)
            if finding is None:
                continue
            self.decisions[rule.id, rule.action, mode] += 1
            if not self.enforce:
                outcome.notes.append(f"would {rule.action} {rule.id}")
                continue
            if rule.action == REJECT:
                outcome.notes.append(f"rejected {rule.id}")
                outcome.rejection = GuardRejected(
                    f"{finding.message}: this request is known to crash vLLM engines "
                    f"(guard rule {rule.id}; {rule.source})", param=finding.param)
                return outcome
            if rule.action == NORMALIZE and rule.fix is not None:
                rule.fix(body)
                outcome.changed = True
                outcome.notes.append(f"normalized {rule.id}")
        return outcome
