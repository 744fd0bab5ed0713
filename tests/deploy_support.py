"""What the deployment files' tests share (deploy/, Dockerfile, docker-compose.yml): where
they are, and the rules every way of running Warden must keep."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from warden import cli
from warden.config import Settings
from warden.config.recorder_schema import PostgresSinkSpec

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "data" / "schemas"

# What a gateway may still do after SIGTERM, at most: let requests in flight finish
# (timeouts.shutdown_grace), write the records queued for PostgreSQL
# (recorder.postgres.drain_timeout, its default when the sink is off: it may be turned on by
# editing the config, without touching what supervises the gateway), give the rate limits'
# slots back to Redis (5 s, app/gateway.py). A supervisor's kill must come later.
LIMITER_CLOSE = 5.0


def drain_seconds(settings: Settings) -> float:
    postgres = settings.recorder.postgres or PostgresSinkSpec(dsn="postgresql://localhost/x")
    return settings.timeouts.shutdown_grace + postgres.drain_timeout + LIMITER_CLOSE


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def assert_warden_command(argv: list[str] | str) -> None:
    """`argv` (after the program's name) is a command Warden's parser accepts."""
    args = shlex.split(argv) if isinstance(argv, str) else argv
    try:
        parsed = cli._parser().parse_args(args)
    except SystemExit:  # argparse's way of refusing
        pytest.fail(f"not a valid warden command: {args}")
    assert callable(parsed.command), args
