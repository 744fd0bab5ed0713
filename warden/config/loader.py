"""Load YAML into `Settings`: expand ${ENV} references, then validate, then report every
mistake as `path: reason` (e.g. `backends[1].url: not a URL`).

`checks`: what the layers above config check of their own settings, run within the validation
(see `SpecChecks`); warden/settings.py loads with all of them, as the gateway must."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from warden.config.schema import Settings
from warden.config.spec import SpecChecks

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Plain reasons for pydantic's error types; anything else keeps pydantic's own message.
_PLAIN_REASONS = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "int_parsing": "not an integer",
    "int_type": "not an integer",
    "string_type": "not a string",
    "list_type": "not a list",
    "model_type": "not a mapping",
    "bool_parsing": "not a boolean",
}


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping is an error: by
    default the last one wins, and a second `auth:` block at a file's end silently replaced
    the first (its keys and mode gone, with nothing said). Merge keys (`<<`) may still be
    overridden: that is what they are for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"`{key_node.value}` is written twice", key_node.start_mark)
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class ConfigError(Exception):
    """A config that must not start. `problems` holds one `path: reason` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None,
                  checks: SpecChecks | None = None) -> Settings:
    return settings_from_yaml(read_config(path), path, environ, checks)


def read_config(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read ({reason})"]) from None


def settings_from_yaml(text: str, path: str | Path, environ: Mapping[str, str] | None = None,
                       checks: SpecChecks | None = None) -> Settings:
    """`text` (the YAML read from `path`) as settings, or `ConfigError`."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeys)  # (a safe loader: see above)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or ""
        reason = problem if problem.endswith("written twice") else "not valid YAML"
        raise ConfigError([f"{path}: {reason}{where}"]) from None
    return parse_settings(raw, os.environ if environ is None else environ, checks)


def parse_settings(raw: object, environ: Mapping[str, str],
                   checks: SpecChecks | None = None) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping of settings"])
    problems: list[str] = []
    expanded = _expand_env(raw, environ, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        return Settings.model_validate(expanded, context=checks)
    except ValidationError as e:
        raise ConfigError([describe_error(err) for err in e.errors()]) from None


def _expand_env(value: object, environ: Mapping[str, str], path: str, problems: list[str]):
    if isinstance(value, dict):
        return {k: _expand_env(v, environ, _join(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(substitute, value)
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe_error(err: dict) -> str:
    """One pydantic error as `path: reason`."""
    path = ""
    for part in err["loc"]:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    reason = _PLAIN_REASONS.get(err["type"])
    if err["type"] == "literal_error":
        reason = f"must be {err['ctx']['expected']}"
    if reason is None:
        reason = err["msg"].removeprefix("Value error, ")
    return f"{path or '(top level)'}: {reason}"


def load_or_explain(path: str, checks: SpecChecks | None = None) -> Settings | None:
    """The settings, or None after printing every problem to stderr (for commands)."""
    try:
        return load_settings(path, checks=checks)
    except ConfigError as e:
        print(f"{path}: invalid config", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
