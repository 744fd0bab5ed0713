"""Which fields each endpoint takes: OpenAI's request bodies plus vLLM's extra parameters, each
with its types, range and content check (warden.guard.fields). Read once, at import, to build
the validator's tables."""

from __future__ import annotations

from warden.guard.fields import (
    BOOL,
    DICT,
    INT,
    LIST,
    NONE,
    NUMBER,
    STR,
    Deep,
    Field,
    cache_salt,
    logit_bias,
    messages,
    prompt,
    stop_strings,
    structured_outputs,
    token_ids,
    tools,
    typed_object,
)


def optional(types: tuple[type, ...], low: float | None = None, high: float | None = None,
             deep: Deep | None = None) -> Field:
    return Field((*types, NONE), low, high, deep)


SAMPLING: dict[str, Field] = {
    # OpenAI's parameters shared by chat and completions
    "stream": optional(BOOL),
    "stream_options": optional(DICT, deep=typed_object("include_usage", BOOL)),
    "n": optional(INT, 1),
    "temperature": optional(NUMBER, 0),
    "top_p": optional(NUMBER, 0, 1),
    "presence_penalty": optional(NUMBER, -2, 2),
    "frequency_penalty": optional(NUMBER, -2, 2),
    "max_tokens": optional(INT, 1),  # vLLM refuses 0: "max_tokens must be at least 1"
    "seed": optional(INT),
    "stop": optional((str, list), deep=stop_strings),
    "logit_bias": optional(DICT, deep=logit_bias),
    "user": optional(STR),
    # vLLM's extra sampling parameters
    "best_of": optional(INT, 1),
    "top_k": optional(INT, -1),
    "min_p": optional(NUMBER, 0, 1),
    "repetition_penalty": optional(NUMBER, 0),
    "length_penalty": optional(NUMBER),
    "min_tokens": optional(INT, 0),
    "stop_token_ids": optional(LIST, deep=token_ids),
    "allowed_token_ids": optional(LIST, deep=token_ids),
    "bad_words": optional(LIST, deep=stop_strings),
    "ignore_eos": optional(BOOL),
    "include_stop_str_in_output": optional(BOOL),
    "skip_special_tokens": optional(BOOL),
    "spaces_between_special_tokens": optional(BOOL),
    "prompt_logprobs": optional(INT, -1),
    "truncate_prompt_tokens": optional(INT, -1),
    "structured_outputs": optional(DICT, deep=structured_outputs),
    "guided_json": optional((str, dict)),
    "guided_regex": optional(STR),
    "guided_choice": optional(LIST, deep=stop_strings),
    "guided_grammar": optional(STR),
    "response_format": optional(DICT, deep=typed_object("type", STR)),
    "priority": optional(INT),
    "request_id": optional(STR),
    "add_special_tokens": optional(BOOL),
    "cache_salt": optional(STR, deep=cache_salt),
}

CHAT: dict[str, Field] = {
    **SAMPLING,
    "messages": Field(LIST, deep=messages),
    "max_completion_tokens": optional(INT, 1),
    "logprobs": optional(BOOL),
    "top_logprobs": optional(INT, 0),
    "tools": optional(LIST, deep=tools),
    "tool_choice": optional((str, dict)),
    "parallel_tool_calls": optional(BOOL),
    "chat_template": optional(STR),
    "chat_template_kwargs": optional(DICT),
    "add_generation_prompt": optional(BOOL),
    "continue_final_message": optional(BOOL),
    "echo": optional(BOOL),
    "documents": optional(LIST),
    "mm_processor_kwargs": optional(DICT),
}

COMPLETIONS: dict[str, Field] = {
    **SAMPLING,
    "max_tokens": optional(INT, 0),  # 0 with echo: the prompt scored, nothing generated
    "prompt": Field((str, list), deep=prompt),
    "logprobs": optional(INT, 0),
    "echo": optional(BOOL),
    "suffix": optional(STR),
}

EMBEDDINGS: dict[str, Field] = {
    "input": Field((str, list), deep=prompt),
    "encoding_format": optional(STR),
    "dimensions": optional(INT, 1),
    "user": optional(STR),
    "truncate_prompt_tokens": optional(INT, -1),
    "add_special_tokens": optional(BOOL),
    "priority": optional(INT),
    "request_id": optional(STR),
}

# Always present, and checked by admission (model), so never "unknown".
COMMON: dict[str, Field] = {"model": optional(STR)}
