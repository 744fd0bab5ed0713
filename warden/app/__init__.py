"""One gateway, assembled: its parts wired at construction (wiring), its lifecycle (gateway),
its reloads (reload), its quarantine's parts (quarantine)."""

from warden.app.gateway import Gateway, build_app
from warden.app.wiring import admin_url, build_quarantine, server_limits

__all__ = ["Gateway", "admin_url", "build_app", "build_quarantine", "server_limits"]
