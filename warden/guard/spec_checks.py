"""The guard's checks of its own settings: config knows their shape, the guard what they name.
The rule ids that `guard.disable` and `guard.actions` name must be rules; a custom rule's id
must be free; an action must be one the rule can take; a custom rule must be able to work
(`custom.spec_problems`).

They run while the config loads, inside its validation (config's `SpecChecks`, passed by
warden/settings.py), so that a config naming an unknown rule fails where any other mistake
does, reported with all the others at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from warden.config.schema import CustomRuleSpec, GuardSpec
from warden.config.spec import SpecChecks
from warden.guard.custom import spec_problems
from warden.guard.rules import OPTIONAL_RULE_IDS, RULES


def rule_id_problems(guard: Mapping[str, object]) -> list[str]:
    """Rule ids that `disable` and `actions` name but no rule has; custom ids that are
    taken; actions a rule cannot take. (From the fields as written: see `validated_with`.)"""
    if not any(guard.get(name) for name in ("disable", "actions", "custom")):
        return []  # (nothing to check)
    builtin = {rule.id: rule for rule in RULES}
    custom = [c for rule in _list(guard.get("custom")) if isinstance(c := _field(rule, "id"), str)]
    named = set(builtin) | set(custom) | OPTIONAL_RULE_IDS
    written = guard.get("actions")
    actions: dict = written if isinstance(written, dict) else {}
    asked = [r for r in (*_list(guard.get("disable")), *actions) if isinstance(r, str)]
    problems = [f"unknown guard rule {rule_id}" for rule_id in dict.fromkeys(asked)
                if rule_id not in named]
    problems += [f"guard rule id {c} is used twice" for c in dict.fromkeys(custom)
                 if c in builtin or custom.count(c) > 1]
    for rule_id, action in actions.items():
        rule = builtin.get(rule_id)
        if action == "normalize" and rule is not None and not rule.can_fix:
            problems.append(f"guard rule {rule_id} cannot normalize (no safe rewrite)")
    return problems


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _field(item: object, name: str) -> object:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


# What the config's validation runs for the guard's specs (see `SpecChecks`).
SPEC_CHECKS: SpecChecks = {GuardSpec: rule_id_problems, CustomRuleSpec: spec_problems}
