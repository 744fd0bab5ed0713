"""What the gateway adds to its answers for browsers and for security policies
(response_headers, cors.*)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from warden.config.spec import Duration, Spec

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
ORIGIN = re.compile(r"\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` as given, or a ValueError naming each field that is not a valid header line
    (a pydantic validator's answer)."""
    problems = [f"{name!r}: not a valid header name or value" for name, value in headers.items()
                if not TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0")]
    if problems:
        raise ValueError("; ".join(problems))
    return headers


class CorsSpec(Spec):
    # Origins whose browser pages may call the OpenAI endpoints: `https://app.example.com`
    # (scheme, host, port), or "*" for any.
    allow_origins: list[str] = Field(min_length=1)
    allow_headers: list[str] = ["authorization", "content-type", "api-key", "x-request-id",
                                "openai-organization", "openai-project", "openai-beta",
                                "x-stainless-arch", "x-stainless-lang", "x-stainless-os",
                                "x-stainless-package-version", "x-stainless-retry-count",
                                "x-stainless-runtime", "x-stainless-runtime-version",
                                "x-stainless-timeout"]
    max_age: Duration = 600.0  # how long a browser may keep a preflight's answer

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        wrong = [o for o in origins if not ORIGIN.fullmatch(o)]
        if wrong:
            raise ValueError(f"not an origin (https://host[:port] or *): {', '.join(wrong)}")
        return origins

    @field_validator("allow_headers")
    @classmethod
    def _headers(cls, names: list[str]) -> list[str]:
        wrong = [n for n in names if not TOKEN.fullmatch(n)]
        if wrong:
            raise ValueError(f"not header names: {', '.join(wrong)}")
        return [n.lower() for n in names]
