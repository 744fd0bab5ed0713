"""The building blocks of the settings schema: the base model (unknown keys are errors,
values frozen) and the human-unit field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

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
