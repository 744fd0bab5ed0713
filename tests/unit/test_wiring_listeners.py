"""The gateway's own exchange listeners are told by a C call (exchange.NativeListener), in the
order the wiring gives; a test's listener, through the protocol, is told all the same."""

from __future__ import annotations

from pathlib import Path

from warden.app.wiring import build_parts
from warden.config.loader import parse_settings
from warden.exchange import Exchange, Listeners, NativeListener


def test_every_shipped_listener_takes_the_native_call(tmp_path: Path):
    settings = parse_settings({
        "backends": [{"name": "b", "url": "http://127.0.0.1:9", "models": ["m"]}],
        "recorder": {"dir": str(tmp_path)},
        "logging": {"access_log": {"enabled": True}},
        "auth": {"mode": "required", "keys": [{"id": "k", "value": "wk-" + "x" * 40,
                                              "limits": {"rpm": 10}}]},
    }, {})
    parts, _ = build_parts(settings)
    names = [type(listener).__name__ for listener in parts.listeners.enders]
    assert names == ["Traffic", "Recorder", "IncidentListener", "LimitSettler", "AccessLog",
                     "GatewayMetrics"]
    assert all(isinstance(listener, NativeListener) for listener in parts.listeners.enders)


class Heard:
    hears_started = True

    def __init__(self) -> None:
        self.heard: list[str] = []

    def started(self, exchange: Exchange) -> None:
        self.heard.append("started")

    def ended(self, exchange: Exchange) -> None:
        self.heard.append("ended")


def test_a_listener_of_the_protocol_alone_is_told_too():
    heard = Heard()
    Listeners([heard]).ended(Exchange(b"r", "/v1/chat/completions", "10.0.0.1", 1.0))
    assert heard.heard == ["started", "ended"]  # (never sent: its start goes with its end)
