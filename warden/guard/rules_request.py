"""Request parameters that some vLLM versions mishandle: routed to the versions that do not,
or dropped where the request means the same without them.

- `thinking_token_budget` (0.21.0 to before 0.28.0): the forced end of reasoning could land in
  another request of the batch when the batch was reordered: one client's budget wrote into
  another tenant's output (GHSA-fpch-3xrf-7q96). -1 is no budget.
- `continue_final_message` with `echo` (the V0 engine, before 0.11): with prefix caching on,
  the second such request tripped an assertion in the engine loop and killed it
  (vllm-project/vllm#19285).
- `use_beam_search` (before 0.6.2): beam search as a sampling parameter never finished
  (vllm-project/vllm#7965); 0.6.2 moved it out of the engine.
- `request_id` in the body: vLLM's chat, completions, embeddings (and pooling) and responses
  requests take it, and use it as the engine's request id when no X-Request-Id header names
  the request. Two requests with one id hung the V0 engine (vllm-project/vllm#10583, fixed by
  #11036 in 0.6.5) and crashed 0.8's V1 engine (#15041). The gateway sends every request with
  its own unique X-Request-Id, which vLLM prefers, so the field is dropped on every version.

Booleans and integers are read as vLLM reads them (warden.guard.lax).
"""

from __future__ import annotations

from warden.guard.lax import lax_bool, lax_int
from warden.guard.rule import NORMALIZE, ROUTE, Finding, Rule, RuleContext


def _thinking_budget(body: dict, ctx: RuleContext) -> Finding | None:
    budget = lax_int(body.get("thinking_token_budget"))
    if budget is None or budget < 0:  # (-1: unlimited; other negatives vLLM refuses)
        return None
    return Finding(f"thinking_token_budget={budget}", "thinking_token_budget")


def _continue_with_echo(body: dict, ctx: RuleContext) -> Finding | None:
    if lax_bool(body.get("continue_final_message")) and lax_bool(body.get("echo")):
        return Finding("continue_final_message with echo", "echo")
    return None


def _beam_search(body: dict, ctx: RuleContext) -> Finding | None:
    if lax_bool(body.get("use_beam_search")):
        return Finding("use_beam_search", "use_beam_search")
    return None


def _body_request_id(body: dict, ctx: RuleContext) -> Finding | None:
    if "request_id" not in body:
        return None
    return Finding("request_id names the engine's request", "request_id")


def _drop_request_id(body: dict) -> None:
    body.pop("request_id", None)


REQUEST_RULES: tuple[Rule, ...] = (
    Rule("reasoning-budget-route", "`thinking_token_budget` set (not -1)",
         "GHSA-fpch-3xrf-7q96 (the forced end of reasoning could land in another concurrent "
         "request's output; 0.21.0 to before 0.28.0)", (0, 28, 0), ROUTE,
         frozenset({"thinking_token_budget"}), _thinking_budget, since=(0, 21, 0),
         harm="on this server a reasoning budget can write into other requests' outputs"),
    Rule("ct-continue-echo", "`continue_final_message` and `echo` both true",
         "vllm-project/vllm#19285 (the V0 engine with prefix caching died of an assertion "
         "on the second such request; V0 is gone from 0.11)", (0, 11, 0), ROUTE,
         frozenset({"continue_final_message"}), _continue_with_echo),
    Rule("samp-beam-search-route", "`use_beam_search` true",
         "vllm-project/vllm#7965 (beam search as a sampling parameter never finished; "
         "moved out of the engine in 0.6.2)", (0, 6, 2), ROUTE,
         frozenset({"use_beam_search"}), _beam_search,
         harm="this request is known to hang vLLM engines"),
    Rule("req-body-request-id", "a `request_id` in the body (vLLM's engine request id)",
         "vllm-project/vllm#10583 (two requests with one id hung the V0 engine; fixed by "
         "#11036 in 0.6.5), #15041 (one id twice crashed 0.8's V1 engine)", None, NORMALIZE,
         frozenset({"request_id"}), _body_request_id, _drop_request_id,
         remedy="drop it: the gateway's own unique X-Request-Id names the request"),
)
