"""Request values as vLLM reads them: pydantic v2's lax mode, which vLLM's request models use.

vLLM coerces what it is sent: `0`, `0.0`, `"false"`, `"no"`, `"off"` are a `false` boolean,
`"5"`, `5.0` and `" 5 "` the integer 5, `"1e3"` the number 1000. A rule that tested the
JSON type (`value is False`) would let `{"json_object": 0}` through to an engine that reads it
as `false`. Every rule and the validator judge a typed field through these functions.

Each returns the value pydantic produces (Python-mode validation of a JSON-decoded body, as
FastAPI does), or None where pydantic refuses it: the engine answers such a request 400
itself. JSON null is None too: for vLLM's optional fields it means absent. The conversions
are pydantic's documented table (docs.pydantic.dev, "Conversion Table"); numeric strings are
read a little more widely than any one pydantic version does (see `_numeral`), so a value
the engine accepts is never misjudged. tests/unit/test_lax.py checks them against pydantic
itself. Pure functions; no allocation for a value that already has the field's type.
"""

from __future__ import annotations

import math
from typing import Final

# pydantic's bool from str: these spellings, in any case, and nothing around them.
TRUE_WORDS: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE_WORDS: Final = frozenset({"0", "off", "f", "false", "n", "no"})
# pydantic strips what Rust calls whitespace from numeric strings (not \x1c-\x1f, which
# Python's str.strip would take too).
NUMBER_SPACE: Final = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                       "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
INT64: Final = 2 ** 63  # pydantic refuses a float outside (-2**63, 2**63) for an int


def lax_bool(value: object) -> bool | None:
    """`value` read as a boolean: true/false, 0/1, 0.0/1.0, and the words above."""
    if value is True or value is False:
        return value
    kind = type(value)
    if kind is int or kind is float:
        if value == 0:
            return False
        return True if value == 1 else None
    if kind is str:
        assert isinstance(value, str)
        if not value.isascii() or len(value) > 5:
            return None
        word = value.lower()
        if word in TRUE_WORDS:
            return True
        return False if word in FALSE_WORDS else None
    return None


def lax_int(value: object) -> int | None:
    """`value` read as an integer: an integer, a bool (0/1), a float without a fraction, or a
    string of one (`"5"`, `" 5 "`, `"1_000"`, `"5.00"`)."""
    kind = type(value)
    if kind is int:
        assert isinstance(value, int)
        return value
    if kind is bool:
        return 1 if value else 0
    if kind is float:
        assert isinstance(value, float)
        if not math.isfinite(value) or not value.is_integer() or not -INT64 < value < INT64:
            return None
        return int(value)
    if kind is str:
        assert isinstance(value, str)
        return _int_of_text(value)
    return None


def _int_of_text(value: str) -> int | None:
    text = _numeral(value)
    if text is None:
        return None
    whole, _, fraction = text.partition(".")
    if fraction.strip("0"):
        return None  # "5.1" is refused; "5.0", "5.00" (and, in some versions, "5.") are 5
    if not whole.lstrip("+-") or len(whole) - len(whole.lstrip("+-")) > 1:
        return None
    try:
        return int(whole)
    except ValueError:
        return None


def _numeral(value: str) -> str | None:
    """A numeric string as pydantic reads it, or None: outer whitespace off, ASCII only,
    underscores, a leading plus sign and leading zeros dropped. (pydantic-core's versions differ
    at the edges — one reads "0-7" as -7 — so this takes the union of what they accept: a
    value vLLM refuses may be read, one it accepts is never missed.)"""
    text = value.strip(NUMBER_SPACE)
    if not text or not text.isascii() or text[0].isspace() or text[-1].isspace():
        return None
    text = text.replace("_", "").lstrip("+0")
    return "0" + text if text[:1] in ("", ".", "e", "E") else text


def lax_float(value: object) -> float | None:
    """`value` read as a number: an integer, a float, a bool, or a numeric string (`"0.5"`,
    `"1e3"`, `"inf"`)."""
    kind = type(value)
    if kind is float:
        assert isinstance(value, float)
        return value
    if kind is int or kind is bool:
        assert isinstance(value, int)
        try:
            return float(value)
        except OverflowError:
            return None
    if kind is str:
        assert isinstance(value, str)
        text = _numeral(value)
        if text is None:
            return None
        try:
            return float(text)  # (Python's grammar is Rust's here: sign, exponent, "5.",
        except ValueError:      # ".5", inf/infinity/nan in any case)
            return None
    return None


def lax_str(value: object) -> str | None:
    """`value` read as a string: only a string (pydantic does not turn numbers into text)."""
    return value if isinstance(value, str) else None
