"""The guard at the door: schema validation, the crash-rule pack and the quarantine, applied to
each admitted request body.

Cost rule: a request the guard has nothing to say about costs one call (`admit`): the
validator's loop over the body's keys and walk of its containers, one set test
(`keys.isdisjoint(body)`: most bodies carry none of the keys any rule looks at), one
comparison of the raw body's length (the prompt-length rule looks only at large bodies), one
walk of the parsed body for the nested triggers (media parts by their keys or types,
special-token text by its `<`: guard/triggers, per string, not per byte), and one truth test
of the quarantine. Rules run only past those tests, and act only if some backend serving the
model runs a vLLM version they apply to (or one whose version is unknown) and is not marked
`safe_for` them. Rules that only repeat, in vLLM's lax reading, what the schema validation
refuses anyway (`covered_by_validation`) are built only when validation is off.

The model's facts (its vocabulary size, context length, special tokens...) are configured
(`guard.models`) or learned from the backends serving it (fleet/model_facts); a rule that
needs one that is unknown does not act on it.

Modes: `enforce` normalizes, routes or rejects; `dry_run` only notes what it would have done
(in the request's audit record and the metrics), so it can be turned on in production safely;
`off` builds no guard at all. The quarantine has a mode of its own (enforce by default): it
acts on engine deaths that happened, not on rules that predict them.

Remote images (`guard.media.fetch`, enforce mode only): a marked request that carries some is
answered with `fetch`; the gateway fetches and inlines them (guard/media_fetch), then
`after_fetch` runs the media rules on what came and the quarantine's step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from warden.config.schema import GuardSpec, ModelFacts
from warden.errors import GuardRejected, WardenError
from warden.fleet.backend import Backend
from warden.fleet.model_facts import merged_facts
from warden.guard.custom import build_rule
from warden.guard.media_fetch import MediaFetcher, remote_images
from warden.guard.probation import Probation, ProbeTicket
from warden.guard.quarantine import Quarantine, QuarantineUnavailable
from warden.guard.rule import NORMALIZE, REJECT, ROUTE, Rule, RuleContext
from warden.guard.rules import RULES
from warden.guard.rules_xgrammar import optional_rules
from warden.guard.triggers import RuleIndex
from warden.guard.validate import Validator

log = logging.getLogger("warden.guard")


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)   # e.g. "normalized so-no-constraint"
    changed: bool = False                            # the body was rewritten
    rejection: WardenError | None = None
    only: frozenset[str] | None = None               # route: the backends it may go to
    probe: ProbeTicket | None = None                 # a quarantine probe (only: its backend)
    wait: bool = False                               # park it until a probe's outcome
    fetch: bool = False                              # its remote images are to be fetched


class Guard:
    def __init__(self, spec: GuardSpec, probation: Probation | None = None):
        self.enforce = spec.mode == "enforce"
        self.mode = "enforce" if self.enforce else "dry_run"
        self.limits = spec.limits
        self.models = spec.models
        rules = [*RULES, *optional_rules(), *(build_rule(custom) for custom in spec.custom)]
        # (The rules that need a vocabulary stay: it may be learned, for any model.)
        self.index = RuleIndex(tuple(
            dataclasses.replace(rule, action=spec.actions.get(rule.id, rule.action))
            for rule in rules
            if rule.id not in spec.disable
            and not (rule.covered_by_validation and spec.validation.enabled)))
        self.fetcher = MediaFetcher(spec.media, spec.limits) \
            if spec.media.fetch and self.enforce else None
        self.validator = Validator(spec.validation) if spec.validation.enabled else None
        self.probation = probation
        self.quarantine: Quarantine | None = probation.quarantine if probation is not None \
            else None
        self.quarantine_enforce = spec.quarantine.mode == "enforce"
        # (rule id | "schema" | "quarantine", action, "enforce" | "dry_run") -> requests
        self.decisions: Counter[tuple[str, str, str]] = Counter()
        # model -> (the backends serving it, the sum of their facts epochs, its facts)
        self._facts: dict[str, tuple[Sequence[Backend], int, ModelFacts]] = {}

    def judge(self, path: str, model: str, body: dict, raw: bytes,
              backends: Sequence[Backend]) -> Outcome | None:
        """What the guard makes of one request (`body`, parsed from `raw`); None (the usual
        answer) when nothing. `body` is rewritten in place when a rule normalizes it."""
        validator = self.validator
        problem = validator.problem(path, body) if validator is not None else None
        index = self.index
        # (A body the schema refuses is not walked: it is refused before any rule runs.)
        nested = index.nested_in(body) if problem is None or not self.enforce else set()
        size = len(raw)
        ruled = index.ruled(body, nested, size)
        quarantine = self.quarantine
        held = quarantine is not None and (bool(quarantine.entries) or quarantine.refusing)
        if problem is None and not ruled and not held:
            return None  # the usual request
        outcome = Outcome()
        if problem is not None:
            self.decisions["schema", REJECT, self.mode] += 1
            if self.enforce:
                outcome.notes.append(f"rejected schema {problem.param or ''}".rstrip())
                outcome.rejection = problem
                return outcome
            outcome.notes.append(f"would reject schema: {problem.message}")
        if ruled:  # not merely because the quarantine holds something
            self.check(path, model, body, backends, nested, size, outcome)
            if nested and self.fetcher is not None and outcome.rejection is None \
                    and remote_images(body):
                outcome.fetch = True
                outcome.notes.append("fetch remote media")
                self.decisions["media-fetch", "fetch", self.mode] += 1
                return outcome  # (the quarantine's step comes once they are inline)
        if held and outcome.rejection is None:
            self.quarantined(body, backends, outcome)
        return outcome if outcome.notes else None  # every act notes

    def after_fetch(self, path: str, model: str, body: dict,
                    backends: Sequence[Backend]) -> Outcome | None:
        """A request whose remote images were fetched and inlined: the media rules judge
        them, then the quarantine's step runs (as `judge` would have)."""
        outcome = Outcome()
        self.check(path, model, body, backends, set(), 0, outcome, self.index.nested_rules)
        quarantine = self.quarantine
        if outcome.rejection is None and quarantine is not None and (
                quarantine.entries or quarantine.refusing):
            self.quarantined(body, backends, outcome)
        return outcome if outcome.notes else None

    def check(self, path: str, model: str, body: dict, backends: Sequence[Backend],
              nested: set[str], size: int, outcome: Outcome,
              rules: tuple[Rule, ...] | None = None) -> None:
        """Apply every rule that matches (of `rules`: all of them by default), in order, into
        `outcome` (`nested`, `size`: see guard/triggers; `rules`: the ones to run whatever
        triggers them). The first rejection stops the rest."""
        ctx = RuleContext(path, self.facts(model, backends), self.limits)
        triggered = self.index.triggered(body, nested, size) if rules is None else rules
        for rule in triggered:
            exposed = [b for b in backends
                       if rule.applies_to(b.vllm_version) and rule.id not in b.safe_for
                       and (rule.affects is None or rule.affects(b.deployment))]
            if not exposed and (backends or rule.affects is not None):
                continue  # (no backend to judge: a deployment rule knows of none affected)
            try:
                finding = rule.find(body, ctx)
            except Exception:  # a rule's bug must not fail the request: it passes, and is said
                self._rule_failed(rule)
                continue
            if finding is None:
                continue
            self.decisions[rule.id, rule.action, self.mode] += 1
            if not self.enforce:
                outcome.notes.append(f"would {rule.action} {rule.id}")
                continue
            if rule.action == ROUTE:
                safe = frozenset(b.name for b in backends if b not in exposed)
                if safe:
                    outcome.only = safe if outcome.only is None else outcome.only & safe
                    outcome.notes.append(f"routed {rule.id}")
                    if outcome.only:
                        continue
                rule_action = "no backend serving the model is safe for it"
            elif rule.action == NORMALIZE and rule.can_fix and self._fixed(rule, body, ctx):
                outcome.changed = True
                outcome.notes.append(f"normalized {rule.id}")
                continue
            else:  # (a fix that failed refuses: the request is one the rule found harmful)
                rule_action = rule.harm
            outcome.notes.append(f"rejected {rule.id}")
            outcome.rejection = GuardRejected(
                f"{finding.message}: {rule_action} (guard rule {rule.id}; {rule.source})",
                param=finding.param)
            return

    def _fixed(self, rule: Rule, body: dict, ctx: RuleContext) -> bool:
        """Rewrite the body; what earlier rules kept of it (`ctx.memo`) no longer holds."""
        try:
            rule.apply_fix(body, ctx)
        except Exception:
            self._rule_failed(rule)
            return False
        finally:
            ctx.memo.clear()
        return True

    def _rule_failed(self, rule: Rule) -> None:
        """Counted (warden_guard_decisions_total{action="error"}); logged with its traceback
        the first time for each rule."""
        self.decisions[rule.id, "error", self.mode] += 1
        if self.decisions[rule.id, "error", self.mode] == 1:
            log.exception("guard rule %s failed on a request (it was let through)", rule.id)

    def facts(self, model: str, backends: Sequence[Backend]) -> ModelFacts:
        """The model's facts: each configured field, else what the backends serving it
        learned (fleet/model_facts). Merged once per change: `backends` is the registry's
        list for the model (a new list when the fleet changes), and a backend's
        `facts_epoch` only grows, so an unchanged sum means unchanged facts."""
        epoch = 0
        for backend in backends:
            epoch += backend.facts_epoch
        cached = self._facts.get(model)
        if cached is not None and cached[0] is backends and cached[1] == epoch:
            return cached[2]
        facts = merged_facts(model, self.models.get(model), backends)
        self._facts[model] = (backends, epoch, facts)
        return facts

    def quarantined(self, body: dict, backends: Sequence[Backend], outcome: Outcome) -> None:
        """The quarantine's step (guard/probation): refuse, probe on one backend, or wait.
        Run again for a request that waited, when a probe's outcome is known."""
        quarantine = self.quarantine
        probation = self.probation
        assert quarantine is not None and probation is not None
        enforce = self.quarantine_enforce
        mode = "enforce" if enforce else "dry_run"
        if quarantine.refusing:  # its store is down, and it fails closed
            self.decisions["quarantine", REJECT, mode] += 1
            outcome.notes.append(("" if enforce else "would ") + "reject quarantine store down")
            if enforce:
                outcome.rejection = QuarantineUnavailable(probation.sync.error or "down")
            return
        entry = quarantine.match(body)
        if entry is None:
            return
        if not enforce:  # (a dry run takes no probe slot and parks nothing)
            self.decisions["quarantine", entry.state, mode] += 1
            outcome.notes.append(f"would hold quarantine {entry.fingerprint} ({entry.state})")
            return
        decision = probation.decide(entry, body, backends)
        if decision.refusal is not None:
            action = REJECT
            outcome.rejection = decision.refusal
            outcome.notes.append(f"rejected quarantine {entry.fingerprint}")
        elif decision.probe is not None:
            action = "probe"
            outcome.probe = decision.probe
            outcome.only = frozenset((decision.probe.backend,))
            outcome.notes.append(f"probe quarantine {entry.fingerprint} on "
                                 f"{decision.probe.backend}")
        else:
            action = "wait"
            outcome.wait = True
            outcome.notes.append(f"waited quarantine {entry.fingerprint}")
        self.decisions["quarantine", action, mode] += 1
