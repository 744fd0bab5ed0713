"""The crash-rule pack: one rule per known way a single request crashes, hangs or exhausts a
vLLM engine. Each names where it comes from and the vLLM versions it applies to; the families
live in rules_structured, rules_schema, rules_schema_check, rules_constraints, rules_regex,
rules_grammar, rules_backend, rules_tools, rules_request, rules_tokens, rules_sampling,
rules_resources, rules_templates, rules_media, rules_media_inline, rules_deployment (by what a
backend is: speculative decoding, device, tokenizer) and rules_inputs (and rules_xgrammar's,
present only with xgrammar installed)."""

from __future__ import annotations

from warden.guard.rule import Rule
from warden.guard.rules_backend import BACKEND_RULES
from warden.guard.rules_constraints import CONSTRAINT_RULES
from warden.guard.rules_deployment import DEPLOYMENT_RULES
from warden.guard.rules_grammar import GRAMMAR_RULES
from warden.guard.rules_inputs import INPUT_RULES
from warden.guard.rules_media import MEDIA_RULES
from warden.guard.rules_media_inline import INLINE_MEDIA_RULES
from warden.guard.rules_regex import REGEX_RULES
from warden.guard.rules_request import REQUEST_RULES
from warden.guard.rules_resources import RESOURCE_RULES
from warden.guard.rules_sampling import SAMPLING_RULES
from warden.guard.rules_schema import SCHEMA_RULES
from warden.guard.rules_schema_check import SCHEMA_CHECK_RULES
from warden.guard.rules_structured import STRUCTURED_OUTPUT_RULES
from warden.guard.rules_templates import TEMPLATE_RULES
from warden.guard.rules_tokens import TOKEN_ID_RULES
from warden.guard.rules_tools import TOOL_RULES
from warden.guard.rules_xgrammar import RULE_ID as XGRAMMAR_RULE_ID

RULES: tuple[Rule, ...] = (*STRUCTURED_OUTPUT_RULES, *SCHEMA_RULES, *SCHEMA_CHECK_RULES,
                           *CONSTRAINT_RULES, *REGEX_RULES, *GRAMMAR_RULES, *BACKEND_RULES,
                           *TOOL_RULES, *REQUEST_RULES, *TOKEN_ID_RULES, *SAMPLING_RULES,
                           *RESOURCE_RULES, *TEMPLATE_RULES, *MEDIA_RULES, *INLINE_MEDIA_RULES,
                           *DEPLOYMENT_RULES, *INPUT_RULES)
# Rules a guard adds when their optional dependency is installed (rules_xgrammar): their ids
# are valid in guard.disable and guard.actions either way.
OPTIONAL_RULE_IDS: frozenset[str] = frozenset({XGRAMMAR_RULE_ID})
