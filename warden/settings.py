"""Settings as Warden loads them: config's loader, with the checks that the parts above config
own (the guard's: which rule ids exist, whether a custom rule can work). Everything that reads
a config file or a config mapping for the gateway (serve, check-config and the other
commands, a reload: SIGHUP, POST /admin/reload, the file watcher) loads it through here, so a
config naming an unknown rule fails at load, with every other mistake."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from warden.config import loader
from warden.config.loader import ConfigError, read_config
from warden.config.schema import Settings
from warden.config.spec import SpecChecks

# (What reading a config needs besides, from config as it is.)
__all__ = ["ConfigError", "Settings", "load_or_explain", "load_settings", "parse_settings",
           "read_config", "settings_from_yaml"]


def checks() -> SpecChecks:
    """Every part's checks (one part owns some today: the guard). Imported when a config is
    loaded, not with the commands that import this (the guard's rules take a while)."""
    from warden.guard.spec_checks import SPEC_CHECKS

    return SPEC_CHECKS


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    return loader.load_settings(path, environ, checks())


def settings_from_yaml(text: str, path: str | Path,
                       environ: Mapping[str, str] | None = None) -> Settings:
    """`text` (the YAML read from `path`) as settings, or `ConfigError`."""
    return loader.settings_from_yaml(text, path, environ, checks())


def parse_settings(raw: object, environ: Mapping[str, str]) -> Settings:
    return loader.parse_settings(raw, environ, checks())


def load_or_explain(path: str) -> Settings | None:
    """The settings, or None after printing every problem to stderr (for commands)."""
    return loader.load_or_explain(path, checks())
