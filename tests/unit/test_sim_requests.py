"""The simulator refuses what vLLM refuses, with vLLM's messages."""

from __future__ import annotations

import orjson
import pytest

from warden.sim.requests import (
    BadRequest,
    check_sampling,
    check_structured_outputs,
    checked_max_tokens,
)


@pytest.mark.parametrize(("body", "message", "param"), [
    ({"temperature": -1.0}, "temperature must be non-negative, got -1.0. "
     "(parameter=temperature, value=-1.0)", "temperature"),
    ({"temperature": 3}, "temperature must be in [0, 2], got 3. (parameter=temperature, "
     "value=3)", "temperature"),
    ({"top_p": 0}, "top_p must be in (0, 1], got 0. (parameter=top_p, value=0)", "top_p"),
    ({"n": 0}, "n must be at least 1, got 0.", None),
    ({"presence_penalty": 2.5}, "presence_penalty must be in [-2, 2], got 2.5.", None),
    ({"stop": ["a", ""]}, "stop cannot contain an empty string.", None),
])
def test_bad_sampling_parameters(body, message, param):
    with pytest.raises(BadRequest) as caught:
        check_sampling(body)
    assert caught.value.status == 400
    assert caught.value.body == (b'{"error":{"message":' + f'"{message}"'.encode()
                                 + b',"type":"BadRequestError","param":'
                                 + (f'"{param}"'.encode() if param else b"null")
                                 + b',"code":400}}')


@pytest.mark.parametrize("body", [{}, {"temperature": 0}, {"temperature": 2.0, "top_p": 1},
                                  {"n": 2, "stop": ["\n"], "top_k": -1, "min_p": 0.5}])
def test_legitimate_sampling_passes(body):
    check_sampling(body)


def test_max_tokens_like_the_captured_0_32_error():
    with pytest.raises(BadRequest) as caught:
        checked_max_tokens({"max_tokens": 100000}, 10, 512)
    assert caught.value.body == (
        b'{"error":{"message":"max_tokens=100000 cannot be greater than max_model_len=512. '
        b'Please request fewer output tokens. (parameter=max_tokens, value=100000)",'
        b'"type":"BadRequestError","param":"max_tokens","code":400}}')


@pytest.mark.parametrize("regex", ["(", "[", "a{2,1}"])
def test_a_regex_that_does_not_parse_gets_vllm_0_32s_400(regex):
    with pytest.raises(BadRequest) as caught:
        check_structured_outputs({"structured_outputs": {"regex": regex}})
    error = orjson.loads(caught.value.body)["error"]
    assert caught.value.status == 400 and error["type"] == "BadRequestError"
    assert error["message"].startswith(f'Grammar error: invalid regex "{regex}"')


@pytest.mark.parametrize("body", [{}, {"structured_outputs": {"regex": "[a-z]+"}},
                                  {"structured_outputs": {"json_object": True}}])
def test_usable_structured_outputs_pass(body):
    check_structured_outputs(body)


def test_max_tokens_zero_is_refused_as_vllm_refuses_it_but_echo_scores_the_prompt():
    for body in ({"max_tokens": 0}, {"max_completion_tokens": 0}, {"prompt": "x", "max_tokens": 0}):
        with pytest.raises(BadRequest) as caught:
            checked_max_tokens(body, 10, 512)
        assert b"max_tokens must be at least 1, got 0." in caught.value.body
    assert checked_max_tokens({"prompt": "x", "max_tokens": 0, "echo": True}, 10, 512) == 1
