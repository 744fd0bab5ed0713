"""Bodies and SSE events in vLLM's exact format (checked against captures of real servers).

vLLM serialises compactly (no spaces) and in a fixed key order; orjson keeps dict order, so the
dicts below are written in vLLM's order.
"""

from __future__ import annotations

import orjson


def fingerprint(version: str) -> str:
    return f"vllm-{version}-0000sim"


def sse(event: dict) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def chat_role_chunk(rid: str, created: int, model: str) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                         "logprobs": None, "finish_reason": None}],
            "prompt_token_ids": None, "prompt_text": None}


def chat_content_chunk(rid: str, created: int, model: str, text: str,
                       finish: str | None) -> dict:
    choice: dict = {"index": 0, "delta": {"content": text}, "logprobs": None,
                    "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = None
    choice["token_ids"] = None
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [choice]}


def completion_chunk(rid: str, created: int, model: str, text: str, finish: str | None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                         "stop_reason": None, "prompt_token_ids": None, "token_ids": None}]}


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion,
            "completion_tokens": completion}


def usage_chunk(rid: str, obj: str, created: int, model: str, prompt: int, completion: int,
                version: str) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage(prompt, completion), "system_fingerprint": fingerprint(version)}


def chat_completion(rid: str, created: int, model: str, text: str, finish: str, prompt: int,
                    completion: int, version: str) -> dict:
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": text, "refusal": None,
                                 "annotations": None, "audio": None, "function_call": None,
                                 "tool_calls": [], "reasoning": None},
                     "logprobs": None, "finish_reason": finish, "stop_reason": None,
                     "token_ids": None}],
        "service_tier": None, "system_fingerprint": fingerprint(version),
        "usage": {**usage(prompt, completion), "prompt_tokens_details": None},
        "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None,
    }


def text_completion(rid: str, created: int, model: str, text: str, finish: str, prompt: int,
                    completion: int, version: str) -> dict:
    return {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                     "stop_reason": None, "token_ids": None, "prompt_logprobs": None,
                     "prompt_token_ids": None}],
        "service_tier": None, "system_fingerprint": fingerprint(version),
        "usage": {**usage(prompt, completion), "prompt_tokens_details": None},
        "kv_transfer_params": None,
    }


def embedding_list(rid: str, created: int, model: str, vectors: list[list[float]],
                   prompt: int) -> dict:
    return {"id": rid, "object": "list", "created": created, "model": model,
            "data": [{"index": i, "object": "embedding", "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt,
                      "completion_tokens": 0, "prompt_tokens_details": None}}


def model_card(model: str, created: int, max_model_len: int, parent: str | None = None) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "vllm",
            "root": parent or model, "parent": parent, "max_model_len": max_model_len,
            "permission": [{"id": f"modelperm-{model}", "object": "model_permission",
                            "created": created, "allow_create_engine": False,
                            "allow_sampling": True, "allow_logprobs": True,
                            "allow_search_indices": False, "allow_view": True,
                            "allow_fine_tuning": False, "organization": "*", "group": None,
                            "is_blocking": False}]}


def error(message: str, type_: str, code: int, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param,
                                   "code": code}})
