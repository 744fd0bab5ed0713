"""The real-vLLM suite: opt-in (`pytest -m real_vllm tests/real_vllm`), see engines.py.

A missing build is a failure that says what to install, never a skip: a suite that passes
without its engines proves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import GatewayThread
from tests.real_vllm.engines import Engine, own_urls

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    """Every test here is a real_vllm test (so the default run, `-m 'not real_vllm'`,
    leaves them out)."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.real_vllm)


@pytest.fixture(scope="module")
def engine():
    """One vLLM engine for a module: yours (WARDEN_VLLM_URL), else started here."""
    urls = own_urls()
    if urls:
        yield Engine.attach(urls[0])
        return
    started = Engine.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def gateway(engine):
    """Warden, by default settings, in front of the engine."""
    gw = GatewayThread({"backends": [{"name": "vllm-0", "url": engine.url}]})
    yield gw
    gw.stop()

