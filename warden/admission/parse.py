"""The chain's first step, which every proxied request takes: the method, the content type,
the JSON body, its `model` and `stream` (read as vLLM reads them); and the body written again
when a stage changed it (`forward_changed`)."""

from __future__ import annotations

from typing import Final

import orjson

from warden.edge.request import HttpRequest
from warden.errors import InvalidRequest, MethodNotAllowed, ModelNotFound, UnsupportedMediaType
from warden.fleet.registry import BackendRegistry
from warden.guard.lax import lax_bool
from warden.proxy.relay import Relay

loads: Final = orjson.loads  # (compiled: no attribute look-up per call)
# The longest model name taken: no fleet serves a longer one, and the name goes into logs,
# spans, metrics' refusals and error messages (a body of 100 MiB may be one model name).
MAX_MODEL_NAME: Final = 1024
dumps: Final = orjson.dumps
TOO_DEEP = ("The request's JSON is nested too deeply for the gateway to forward it changed "
            "(at most 255 levels).")


def parse_request(request: HttpRequest, backends: BackendRegistry) -> tuple[str, bool, dict]:
    """(model, stream, the parsed body) of an acceptable request; raises a `ClientError`
    otherwise."""
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use POST")
    content_type = request.fields.get(b"content-type", b"")
    # (As sent, most often; else its first 16 bytes in any case: sliced and compared, where
    # `startswith` would parse its arguments, ~700 instructions.)
    if content_type != b"application/json" and \
            content_type[:16].lower() != b"application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        body = loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        model = default_model(backends)
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model")
    if len(model) > MAX_MODEL_NAME:
        raise ModelNotFound(f"The model `{model[:64]}...` ({len(model)} characters) does not "
                            "exist.", param="model")
    stream = body.get("stream")
    if stream is not True and stream is not None and stream is not False:
        stream = lax_bool(stream)  # vLLM streams "true", 1, "on" too (pydantic's lax mode)
    return model, stream is True, body


def default_model(backends: BackendRegistry) -> str:
    """vLLM lets a request omit `model` when it serves one; so does a one-model fleet."""
    models = backends.models()
    if len(models) == 1:
        return next(iter(models))
    raise InvalidRequest("you must provide a model parameter", param="model")


def forward_changed(relay: Relay, body: dict) -> InvalidRequest | None:
    """Sets `relay.forwarded_body` to `body`, changed by a stage, as JSON. orjson reads 1,024
    levels of nesting but writes 255: a deeper body is refused (a 400 the stage returns),
    never an exception on the data path (one would leave what the stages reserved held)."""
    try:
        relay.forwarded_body = dumps(body)
    except TypeError:   # (orjson's JSONEncodeError)
        return InvalidRequest(TOO_DEEP)
    return None
