"""The building blocks of the settings schema: the base model (unknown keys are errors,
values frozen) and the human-unit field types."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from warden.config.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def parse_host_port(value: object) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) == 2:  # already parsed (built in code)
        return value
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("not HOST:PORT (e.g. 127.0.0.1:8000)")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("not HOST:PORT (e.g. 127.0.0.1:8000)")
    return host, int(port_text)


HostPort = Annotated[tuple[str, int], BeforeValidator(parse_host_port)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The problems found in a spec's fields as written (each a reason; the spec's path is added).
ProblemsOf = Callable[[Mapping[str, object]], list[str]]

# What the layers above config check in a spec's fields that config cannot (it does not know
# the guard's rule ids, say), by the spec's class. Given to the validation as its context
# (`Settings.model_validate(raw, context=checks)`: the loader's `checks`), they run as the
# spec's own checks do (`validated_with`): every mistake reported in one go, at its path.
SpecChecks = Mapping[type, ProblemsOf]


def outside_checks(spec: type, info: ValidationInfo) -> ProblemsOf:
    """The checks the validation's context holds for `spec` (none: no problems)."""
    checks = info.context
    problems_of = checks.get(spec) if isinstance(checks, Mapping) else None
    return problems_of if problems_of is not None else _no_problems


def _no_problems(fields: Mapping[str, object]) -> list[str]:
    return []


def validated_with(data: object, handler: Callable[[object], Any],
                   problems_of: ProblemsOf) -> Any:
    """For a `model_validator(mode="wrap")`: the fields' validation (`handler`) and the
    checks across fields (`problems_of`, given the fields as written) both run, and every
    mistake of both is reported in one go. (An "after" validator runs only once every field
    is valid, and stops at its first error: a config with six mistakes took five runs.)"""
    try:
        model, errors = handler(data), []
    except ValidationError as e:
        model, errors = None, e.errors()
    fields = data.__dict__ if isinstance(data, BaseModel) else data
    problems = problems_of(fields) if isinstance(fields, Mapping) else []
    if not errors and not problems:
        return model
    lines = [{"type": PydanticCustomError(err["type"], "{reason}",
                                          {**err.get("ctx", {}), "reason": err["msg"]}),
              "loc": err["loc"], "input": err.get("input")} for err in errors]
    lines += [{"type": PydanticCustomError("config", "{reason}", {"reason": problem}),
               "loc": (), "input": data} for problem in problems]
    raise ValidationError.from_exception_data("config", lines)  # type: ignore[arg-type]
