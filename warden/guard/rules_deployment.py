"""Requests that crash engines deployed a certain way, whatever else they are: a grammar on a
speculative or CPU engine, penalties under one speculative method, `skip_special_tokens`
false under the Mistral tokenizer.

Each rule says which backends it applies to by their deployment facts (`Rule.affects`, read
from fleet/deployment: declared in `backends[].deployment`, or learned from /metrics) as well
as by version. A fact nobody declared and /metrics does not show is unknown, and unknown is
not affected: these rules act only on backends known to be so (see fleet/deployment for why),
so a fleet whose deployment is unknown sees nothing routed or refused by them. The routes
send a request to the backends of the model that are not affected (a mixed fleet keeps
serving it); where every backend serving the model is affected, the request is refused, as
for any route rule (`guard.actions` and `guard.disable` change that). A normalize rule rewrites
the request for whichever backend then takes it.
"""

from __future__ import annotations

from warden.fleet.deployment import Deployment
from warden.guard.lax import lax_bool, lax_float
from warden.guard.rule import NORMALIZE, ROUTE, Finding, Rule, RuleContext
from warden.guard.rules_structured import GUIDED_KEYS, param_name, structured_params

_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
_GRAMMAR_FORMATS = ("json_schema", "json_object", "structural_tag")
GRAMMAR_KEYS = frozenset({"structured_outputs", *GUIDED_KEYS, "response_format",
                          "tool_choice", "text"})
# A penalty's neutral value (vLLM skips the penalty step for it).
_PENALTIES = (("repetition_penalty", 1.0), ("frequency_penalty", 0.0),
              ("presence_penalty", 0.0))


def grammar_param(body: dict) -> str | None:
    """The parameter that makes the engine decode this request under a grammar: a
    structured-output constraint, a json_schema/json_object/structural_tag response format
    (chat's `response_format`, the Responses API's `text.format`), or tools forced by
    `tool_choice` ("required" or a named function). None: no grammar."""
    params = structured_params(body)
    if params is not None:
        values, prefix = params
        for field in _CONSTRAINTS:
            if values.get(field) not in (None, "", [], {}, False):
                return param_name(prefix, field)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in _GRAMMAR_FORMATS:
        return "response_format"
    text = body.get("text")
    form = text.get("format") if isinstance(text, dict) else None
    if isinstance(form, dict) and form.get("type") in _GRAMMAR_FORMATS:
        return "text.format"
    tools, choice = body.get("tools"), body.get("tool_choice")
    if isinstance(tools, list) and tools and (choice == "required" or isinstance(choice, dict)):
        return "tool_choice"
    return None


def _grammar(body: dict, ctx: RuleContext) -> Finding | None:
    param = grammar_param(body)
    if param is None:
        return None
    return Finding(f"{param} asks for output under a grammar", param)


def _penalty(body: dict, ctx: RuleContext) -> Finding | None:
    for field, neutral in _PENALTIES:
        value = lax_float(body.get(field))
        if value is not None and value != neutral:
            return Finding(f"{field}={value:g} (not the neutral {neutral:g})", field)
    return None


def _special_tokens_kept(body: dict, ctx: RuleContext) -> Finding | None:
    if lax_bool(body.get("skip_special_tokens")) is False:
        return Finding("skip_special_tokens=false", "skip_special_tokens")
    return None


def _drop_skip_special_tokens(body: dict) -> None:
    body.pop("skip_special_tokens", None)  # the engine's default: special tokens skipped


def speculative(deployment: Deployment) -> bool:
    return deployment.speculative_decoding is True


def on_cpu(deployment: Deployment) -> bool:
    return deployment.device == "cpu"


def hidden_states_speculation(deployment: Deployment) -> bool:
    return deployment.speculative_method == "extract_hidden_states"


def mistral_tokenizer(deployment: Deployment) -> bool:
    return deployment.tokenizer_mode == "mistral"


_ROUTED = "its engine dies of it on backends deployed this way"

DEPLOYMENT_RULES: tuple[Rule, ...] = (
    Rule("so-spec-decode-route",
         "a request decoded under a grammar (a structured-output constraint, a "
         "`json_schema`/`json_object`/`structural_tag` response format, or tools forced by "
         "`tool_choice`) on a backend that runs speculative decoding",
         "vllm-project/vllm#9423 (V0 draft model: stopped vLLM), #11484 (ngram with "
         "xgrammar), #27969 (eagle3 on 0.11: a draft token the grammar refuses kills "
         "EngineCore; fixed by #44993 after 0.26.0), #49981 (tool_choice required with MTP "
         "on 0.26: FSM crash or endless tool calls)", (0, 27, 0), ROUTE, GRAMMAR_KEYS,
         _grammar, harm=_ROUTED, affects=speculative),
    Rule("so-cpu-route",
         "a request decoded under a grammar on a backend that runs on CPU, where vLLM "
         "applies the grammar's token mask through a pinned-memory copy only a GPU has",
         "vllm-project/vllm#37706 (pin_memory=True in apply_grammar_bitmask kills a CPU "
         "engine batching structured and plain requests: in 0.12.0 to 0.18.x, fixed in "
         "0.19.0, checked in released code; 0.11.0 does not pin); #51283 (the V2 CPU model "
         "runner, open) is not covered: structured outputs did not kill the 0.32 CPU build "
         "measured", (0, 19, 0), ROUTE, GRAMMAR_KEYS, _grammar, harm=_ROUTED,
         affects=on_cpu, since=(0, 12, 0)),
    Rule("spec-penalty-route",
         "a repetition, frequency or presence penalty other than the neutral one on a "
         "backend whose speculative method is `extract_hidden_states`",
         "GHSA-83vm-p52w-f9pw / CVE-2026-44223 (0.18.0 to 0.19.x: the proposer's output "
         "shape breaks the penalty step and EngineCore dies)", (0, 20, 0), ROUTE,
         frozenset({name for name, _neutral in _PENALTIES}), _penalty, harm=_ROUTED,
         affects=hidden_states_speculation, since=(0, 18, 0)),
    Rule("skip-special-mistral",
         "`skip_special_tokens` false on a backend using the Mistral tokenizer "
         "(`--tokenizer-mode mistral`), whose decoder asserts it is true",
         "vllm-project/vllm#14094 (the assert shut the server down; chat refuses it from "
         "0.8.5, completions still reach it in 0.11.0; 0.12.0's tokenizer accepts it, "
         "checked in released code)", (0, 12, 0), NORMALIZE,
         frozenset({"skip_special_tokens"}), _special_tokens_kept, _drop_skip_special_tokens,
         harm=_ROUTED, remedy="drop it (special tokens are skipped, the engine's default)",
         affects=mistral_tokenizer),
)
