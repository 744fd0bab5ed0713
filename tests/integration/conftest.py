from __future__ import annotations

import pytest

from tests.harness import GatewayThread, SimProcess


@pytest.fixture(scope="module")
def fleet():
    """Three fast simulated nodes, shared by a module's tests that do not break them."""
    sim = SimProcess(3)
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def gateway(fleet):
    gw = GatewayThread({"backends": fleet.backends_config()})
    yield gw
    gw.stop()


@pytest.fixture
def slow_fleet():
    """Nodes that stream one token every 20 ms: long enough to act mid-stream."""
    sim = SimProcess(3, "--token-delay", "0.02", "--output-tokens", "500")
    yield sim
    sim.stop()


@pytest.fixture
def slow_gateway(slow_fleet):
    gw = GatewayThread({"backends": slow_fleet.backends_config()})
    yield gw
    gw.stop()
