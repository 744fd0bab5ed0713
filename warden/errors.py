"""One error tree and the one mapping to the OpenAI error envelope.

Rule: a `ClientError` is the caller's fault and never counts against a backend; an
`UpstreamError` is the fleet's. `NotSentError` is the subset of upstream errors raised before a
single byte of the request reached a backend, and is the only kind that may be retried.
"""

from __future__ import annotations

import orjson


class WardenError(Exception):
    """The base is an internal error (500); subclasses say whose fault it is."""

    status: int = 500
    type: str = "internal_error"
    code: str | None = "internal_error"
    # Extra response header lines (each ending in CRLF), e.g. b"retry-after: 1\r\n".
    headers: bytes = b""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> bytes:
        return error_envelope(self.message, self.type, self.param, self.code)


def error_envelope(message: str, type_: str, param: str | None, code: str | int | None) -> bytes:
    """The OpenAI error body: {"error": {"message", "type", "param", "code"}}."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return orjson.dumps({"error": error})


def error_text(error: BaseException | str, timeout: float | None = None) -> str:
    """A failure as one line that always says something: words as given; an exception's
    class and text (a timeout's own text is empty: what `timeout` it ran out of)."""
    if isinstance(error, str):
        return error
    text = str(error)
    if isinstance(error, TimeoutError) and not text:
        text = f"no answer within {timeout:g}s" if timeout else "timed out"
    return f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__


class ClientError(WardenError):
    status = 400
    type = "invalid_request_error"
    code = None


class InvalidRequest(ClientError):
    code = "invalid_request"


# The guard's refusals. (Every exception class lives in this interpreted module: a class
# compiled by mypyc (warden.compiled) that derives from a Python class does not override
# its class attributes, such as `code`.)
class InvalidField(InvalidRequest):
    """A body that breaks the schema (warden.guard.validate)."""

    code = "invalid_value"


class GuardRejected(InvalidRequest):
    """A body a guard rule refuses."""

    code = "rejected_by_guard"


class MediaFetchFailed(InvalidRequest):
    """A remote image the gateway fetches itself (guard.media.fetch) could not be fetched:
    refused at the door rather than failing in the engine."""

    code = "media_fetch_failed"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class Forbidden(ClientError):
    """A path the gateway knows and never serves to clients."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class Unauthenticated(ClientError):
    """No API key, or one that is not valid (unknown, revoked, expired): OpenAI's 401."""

    status = 401
    code = "invalid_api_key"


class MissingApiKey(Unauthenticated):
    """No key at all (OpenAI answers this one without a code)."""

    code = None


class ModelNotAllowed(Forbidden):
    """A model the API key (or its tenant) may not use."""

    code = "model_not_allowed"


class RateLimited(ClientError):
    """A key's, a tenant's or an address's limit is reached: OpenAI's 429 (its `type` says
    which: requests or tokens); the answer carries Retry-After and the x-ratelimit lines."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class InsufficientQuota(ClientError):
    """A key's or a tenant's budget (a day's or a month's tokens or cost) is spent: OpenAI's
    429 `insufficient_quota`, which clients must not retry (`x-should-retry: false`)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ModelNotPriced(Forbidden):
    """A model with no price in rate_limits.prices, asked for under a cost budget."""

    code = "model_not_priced"


class LimitsUnavailable(WardenError):
    """The limits' shared store cannot be reached and `rate_limits.fail_mode` is closed."""

    status = 503
    type = "server_error"
    code = "limits_unavailable"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class HeadersTooLarge(ClientError):
    status = 431
    code = "headers_too_large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class ClientGone(ClientError):
    """The client left before its answer (recorded as nginx logs it: 499)."""

    status = 499
    code = "client_closed_request"


class BodyBufferFull(WardenError):
    """A request body that does not fit in what all bodies in memory may hold together
    (`limits.max_body_buffer`): the gateway's own load, not the client's fault; retry soon."""

    status = 503
    type = "server_error"
    code = "body_buffer_full"


class MediaFetchBusy(WardenError):
    """The gateway fetches as many requests' images as it may at once, and this one found no
    turn within its time (guard.media.timeout): its own load; retry soon."""

    status = 503
    type = "server_error"
    code = "media_fetch_busy"


class Conflict(ClientError):
    """A request the state of the gateway refuses as it stands (an id taken, keys that come
    from the config file)."""

    status = 409
    code = "conflict"


class KeyStoreUnavailable(WardenError):
    """The key store (PostgreSQL) cannot be reached: a change to the keys cannot be made now
    (the keys already held keep working)."""

    status = 503
    type = "server_error"
    code = "key_store_unavailable"
    headers = b"retry-after: 5\r\n"


class Aborted(WardenError):
    """An operator ended the request through the admin API before its answer began."""

    status = 503
    type = "server_error"
    code = "aborted"


class UpstreamError(WardenError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class NoBackendAvailable(UpstreamError):
    status = 503
    code = "no_backend_available"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class NotSentError(UpstreamError):
    """Raised before any byte reached the backend (refused, connect timeout, no free
    connection). Only these may be retried on another backend."""

    status = 503
    code = "backend_unreachable"


class ConnectFailed(NotSentError):
    """The backend refused or did not answer the TCP connect: it is likely down."""


class PoolExhausted(NotSentError):
    """Every connection to the backend was busy for the whole pool timeout."""
