"""Typed settings, loaded from YAML with ${ENV} expansion and path-precise error messages."""

from warden.config.loader import (
    ConfigError,
    load_or_explain,
    load_settings,
    parse_settings,
    read_config,
    settings_from_yaml,
)
from warden.config.schema import BackendSpec, Settings

__all__ = ["BackendSpec", "ConfigError", "Settings", "load_or_explain", "load_settings",
           "parse_settings", "read_config", "settings_from_yaml"]
