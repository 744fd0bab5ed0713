"""deploy/systemd/warden.service: `systemd-analyze verify` accepts it (every key known, every
value parsed), and it keeps the gateway's rules: SIGHUP reloads, the stop waits out the drain,
a crash restarts it, it runs hardened as its own user."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess

from tests.deploy_support import DEPLOY, assert_warden_command, drain_seconds
from warden.config import Settings
from warden.config.schema import BackendSpec
from warden.config.units import parse_duration

UNIT = DEPLOY / "systemd" / "warden.service"
WARDEN = "/opt/warden/bin/warden"


def service() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNIT)
    return dict(parser["Service"])


def analyze(command: list[str], text: str, tmp_path) -> subprocess.CompletedProcess:
    """systemd-analyze COMMAND... on a unit file of `text`, with Warden's path pointing at a
    stand-in (verify checks that every command is executable, and nothing is installed at
    /opt/warden here)."""
    program = shutil.which("systemd-analyze")
    assert program, "systemd-analyze is missing (.ci/run installs systemd)"
    stand_in = tmp_path / "warden"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "warden.service"
    unit.write_text(text.replace(WARDEN, str(stand_in)))
    return subprocess.run([program, *command, str(unit)], capture_output=True, text=True,
                          timeout=60)


def verify(text: str, tmp_path) -> subprocess.CompletedProcess:
    return analyze(["verify"], text, tmp_path)


def test_systemd_accepts_the_unit(tmp_path):
    text = UNIT.read_text()
    assert WARDEN in text
    result = verify(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "warden" in line] == []


def test_the_verification_sees_a_mistake(tmp_path):
    """verify only warns (exit 0) on an unknown key or a value it cannot parse: the check
    above reads what it says."""
    text = UNIT.read_text().replace("Restart=on-failure", "Restart=on-failur\nRestrat=always")
    lines = [line for line in verify(text, tmp_path).stderr.splitlines() if "warden" in line]
    assert len(lines) == 2, lines


def test_systemd_rates_its_exposure_low(tmp_path):
    """systemd's own rating of the sandbox, 0 (locked down) to 10 (none): at most 2 (it is
    1.5: what is left open is the network, which a gateway needs, and a few system calls)."""
    command = ["security", "--offline=yes", "--threshold=20"]
    result = analyze(command, UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    bare = "[Service]\nExecStart=/opt/warden/bin/warden serve -c /etc/warden/warden.yaml\n"
    assert analyze(command, bare, tmp_path).returncode != 0  # (an open unit fails it)


def test_it_runs_and_reloads_warden():
    unit = service()
    start, *_ = shlex.split(unit["ExecStart"])
    assert start == WARDEN
    assert_warden_command(shlex.split(unit["ExecStart"])[1:])
    assert_warden_command(shlex.split(unit["ExecStartPre"])[1:])
    assert shlex.split(unit["ExecStartPre"])[1] == "check-config"
    # `warden serve` reloads its config on SIGHUP (tests/integration/test_reload.py).
    assert shlex.split(unit["ExecReload"])[1:] == ["-HUP", "$MAINPID"]
    assert unit["Type"] == "exec"  # $MAINPID is the gateway itself


def test_the_stop_outlasts_the_drain_and_a_crash_restarts_it():
    unit = service()
    defaults = Settings(backends=[BackendSpec(name="a", url="http://127.0.0.1:1")])
    assert unit["KillSignal"] == "SIGTERM"
    assert parse_duration(unit["TimeoutStopSec"] + "s") > drain_seconds(defaults)
    assert unit["Restart"] == "on-failure"


def test_it_runs_hardened_as_its_own_user():
    unit = service()
    assert unit["User"] not in ("root", "0")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
                       "SystemCallFilter": "@system-service"}.items():
        assert unit[key] == value, key
    # With ProtectSystem=strict, the recorder's directory is the state directory it gets.
    assert unit["WorkingDirectory"] == f"/var/lib/{unit['StateDirectory']}"
