"""Optional: each structured-output spec compiled by xgrammar itself, at the door, where
xgrammar is installed (`pip install 'warden[xgrammar]'`; it brings torch). What xgrammar
refuses would fail in the engine, and killed it before vLLM 0.26 (vllm-project/vllm#47312);
the checks of rules_schema_check and rules_constraints see only what they were written for.

It reads specs as vLLM's API server validates them for xgrammar (`Grammar.from_json_schema`,
`from_regex`, `from_ebnf` or `from_lark`): a conversion without the model's tokenizer, which
takes milliseconds. xgrammar releases the GIL while it works; each conversion runs in a
thread of its own and is waited for `guard.limits.xgrammar_timeout` at most. One that takes
longer is refused (the engine would take as long, with no timeout: vllm-project/vllm#54003);
its thread runs on, holding one of a few slots, and while every slot is held the check is
skipped rather than wait. Models whose engine uses another backend (`guard.models.*.
structured_output_backend`) are not checked.

Without xgrammar the rule is absent, and the guard says so once in its log when it starts.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
from collections.abc import Callable
from types import ModuleType

import orjson

from warden.guard.rule import REJECT, Finding, Rule, RuleContext
from warden.guard.rules_constraints import CONSTRAINT_KEYS
from warden.guard.rules_structured import param_name, structured_params
from warden.guard.schema_slots import SCHEMA_KEYS, parsed, slots

RULE_ID = "so-xgrammar-refuses"
_SLOTS = 4  # conversions that may run at once (a stuck one keeps its slot)
_BACKENDS = (None, "", "auto", "xgrammar")
_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")  # "[12:00:00] /path/file.cc:42: "
log = logging.getLogger("warden.guard")


class XgrammarCheck:
    """Runs xgrammar's conversions with a time bound; owned by one Guard."""

    def __init__(self, xgrammar: ModuleType):
        self.grammar = xgrammar.Grammar
        self.slots = threading.BoundedSemaphore(_SLOTS)

    def specs(self, body: dict) -> list[tuple[str, Callable[[], object]]]:
        grammar = self.grammar
        found: list[tuple[str, Callable[[], object]]] = []
        for slot in slots(body):
            schema = parsed(slot.raw)
            if isinstance(schema, (dict, bool)):
                text = orjson.dumps(schema).decode()
                found.append((slot.param, lambda text=text: grammar.from_json_schema(text)))
        params = structured_params(body)
        if params is not None:
            values, prefix = params
            regex, ebnf = values.get("regex"), values.get("grammar")
            if isinstance(regex, str) and regex:
                found.append((param_name(prefix, "regex"),
                              lambda: grammar.from_regex(regex)))
            if isinstance(ebnf, str) and ebnf.strip():
                found.append((param_name(prefix, "grammar"), lambda: self.ebnf_or_lark(ebnf)))
        return found

    def ebnf_or_lark(self, text: str) -> object:
        """vLLM guesses which syntax a grammar is in; either one reading it is enough."""
        try:
            return self.grammar.from_ebnf(text)
        except Exception:  # (xgrammar raises RuntimeError, and others)
            return self.grammar.from_lark(text)

    def find(self, body: dict, ctx: RuleContext) -> Finding | None:
        if ctx.facts.structured_output_backend not in _BACKENDS:
            return None
        deadline = time.monotonic() + ctx.limits.xgrammar_timeout
        for param, convert in self.specs(body):
            outcome = self.run(convert, deadline - time.monotonic())
            if outcome is not None:
                return Finding(f"{param} {outcome}", param)
        return None

    def run(self, convert: Callable[[], object], wait: float) -> str | None:
        """None if `convert` succeeded (or could not be tried), else what went wrong."""
        if wait <= 0 or not self.slots.acquire(blocking=False):
            return None
        failure: list[str] = []

        def work() -> None:
            try:
                convert()
            except Exception as e:  # (whatever xgrammar raises is its refusal)
                failure.append(_PREFIX.sub("", str(e)).strip()[:300] or type(e).__name__)
            finally:
                self.slots.release()

        thread = threading.Thread(target=work, name="warden-xgrammar", daemon=True)
        thread.start()
        thread.join(wait)
        if thread.is_alive():
            return f"did not compile in {wait:.2f} s"
        return f"does not compile: {failure[0]}" if failure else None


def optional_rules() -> tuple[Rule, ...]:
    """The xgrammar rule, if xgrammar can be imported. Said in the log when it is on; its
    absence, the default install's state, only at debug level (a start prints nothing
    about an extra it was never asked for)."""
    try:
        xgrammar = importlib.import_module("xgrammar")
    except Exception as e:  # (missing, or broken: torch absent, ...)
        log.debug("guard rule %s is off: xgrammar cannot be imported (%s); "
                 "pip install 'warden[xgrammar]' turns it on", RULE_ID, e)
        return ()
    log.info("guard rule %s is on: structured-output specs are compiled with xgrammar",
             RULE_ID)
    check = XgrammarCheck(xgrammar)
    return (Rule(RULE_ID, "a structured-output JSON schema, regex or grammar that xgrammar "
                 "refuses or takes longer than guard.limits.xgrammar_timeout to read",
                 "vllm-project/vllm#47312 (a spec that fails to compile killed EngineCore "
                 "before 0.26), #54003 (no compile timeout); checked with xgrammar itself",
                 None, REJECT, SCHEMA_KEYS | CONSTRAINT_KEYS, check.find),)
