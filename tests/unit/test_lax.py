"""The lax readings against pydantic itself: every value pydantic accepts is read as pydantic
reads it (a few numeric strings some pydantic versions refuse are read too: the engine's
refusal makes those harmless, a missed acceptance would not be)."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import TypeAdapter, ValidationError

from warden.guard.lax import lax_bool, lax_float, lax_int, lax_str

READERS = {bool: lax_bool, int: lax_int, float: lax_float}
ADAPTERS = {kind: TypeAdapter(kind) for kind in READERS}
ALPHABET = "0123456789_.eE+- \t\xa0\x1cinfatyoNI\u0661\uff11x"
ODD_NUMBERS = [True, False, 0, 1, 2, -1, 0.0, -0.0, 1.0, 0.5, 2.0, 1e3, math.nan, math.inf,
               -math.inf, 2.0 ** 63, -(2.0 ** 63), 9.2e18, 2 ** 63, 10 ** 400, None, [], {}]


def _pydantic(kind: type, value: object) -> tuple[bool, object]:
    try:
        return True, ADAPTERS[kind].validate_python(value)
    except ValidationError:
        return False, None


def _same(expected: object, got: object) -> bool:
    if type(expected) is not type(got):
        return False
    if isinstance(expected, float):
        assert isinstance(got, float)
        if math.isnan(expected):
            return math.isnan(got)
        return expected == got and math.copysign(1, expected) == math.copysign(1, got)
    return expected == got


def _values() -> list[object]:
    rng = random.Random(19)
    strings = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
               for _ in range(6000)]
    words = [w for word in ("true", "false", "yes", "no", "on", "off", "t", "f", "y", "n")
             for w in (word, word.upper(), word.title(), f" {word}", f"{word} ")]
    return [*strings, *words, *ODD_NUMBERS]


@pytest.mark.parametrize("kind", [bool, int, float])
def test_every_value_pydantic_accepts_is_read_as_pydantic_reads_it(kind):
    reader = READERS[kind]
    for value in _values():
        accepted, expected = _pydantic(kind, value)
        if accepted:
            assert _same(expected, reader(value)), (kind, value, expected, reader(value))


def test_booleans_are_exactly_pydantics():
    for value in _values():
        accepted, expected = _pydantic(bool, value)
        assert lax_bool(value) == (expected if accepted else None), value


@pytest.mark.parametrize(("value", "read"), [
    (0, False), (0.0, False), ("false", False), ("0", False), ("no", False), ("off", False),
    ("f", False), ("n", False), ("FALSE", False), (1, True), ("true", True), ("yes", True),
    ("on", True), ("t", True), (1.0, True), (2, None), ("", None), (" true", None),
    ("falsey", None), (None, None), ([], None)])
def test_what_vllm_reads_as_a_boolean(value, read):
    assert lax_bool(value) is read


@pytest.mark.parametrize(("value", "read"), [
    ("5", 5), (" 5 ", 5), ("5.0", 5), ("5.00", 5), ("1_000", 1000), ("-3", -3), (5.0, 5),
    (True, 1), ("5.5", None), ("1e3", None), ("0x10", None), ("five", None), (5.5, None),
    (math.inf, None), ("\uff15", None), (None, None)])
def test_what_vllm_reads_as_an_integer(value, read):
    assert lax_int(value) == read and (read is None or type(lax_int(value)) is int)


def test_what_vllm_reads_as_a_number_and_as_text():
    assert lax_float("1e3") == 1000.0 and lax_float("0.5") == 0.5 and lax_float(2) == 2.0
    assert lax_float("inf") == math.inf and lax_float("one") is None
    assert lax_str("x") == "x" and lax_str(0) is None and lax_str(None) is None
