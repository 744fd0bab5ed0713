"""The README's examples work as shown: every YAML block is a valid gateway config (or, with
`nodes:`, a valid simulator fleet), the example config file is too and names every routing
policy, and the custom-rule example does what the text beside it says."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import yaml

from warden.config import parse_settings
from warden.config.routing_schema import RoutingSpec
from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.sim.profiles import load_fleet

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BACKENDS = [{"name": "a", "url": "http://127.0.0.1:18090"}]


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_every_yaml_example_in_the_readme_loads(tmp_path):
    blocks = yaml_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        raw = yaml.safe_load(block)
        if "nodes" in raw:  # a simulator fleet (warden sim --fleet)
            path = tmp_path / "fleet.yaml"
            path.write_text(block)
            assert load_fleet(path)
        else:  # a config, or a part of one shown on its own
            parse_settings({"backends": BACKENDS, **raw}, {"VLLM_API_KEY": "k"})


def test_the_example_config_loads_and_names_every_policy():
    text = (ROOT / "examples" / "warden.yaml").read_text()
    parse_settings(yaml.safe_load(text), {})
    policies = RoutingSpec.model_fields["policy"].annotation.__args__
    assert len(policies) == 6 and all(policy in text for policy in policies)


def test_the_custom_rule_example_behaves_as_described():
    block = next(b for b in yaml_blocks() if "cap-max-tokens" in b)
    settings = parse_settings({"backends": BACKENDS, **yaml.safe_load(block)}, {})
    guard = Guard(settings.guard)
    small = Backend(BackendSpec(name="small", url="http://127.0.0.1:1"), TimeoutsSpec())
    big = Backend(BackendSpec(name="big", url="http://127.0.0.1:2",
                              safe_for=["long-outputs-to-big-nodes"]), TimeoutsSpec())

    def admit(max_tokens: int, role: str = "user"):
        body = {"model": "m", "max_tokens": max_tokens,
                "messages": [{"role": role, "content": "hi"}]}
        return body, guard.admit("/v1/chat/completions", "m", body, orjson.dumps(body),
                                 [small, big])

    body, outcome = admit(50000)
    assert body["max_tokens"] == 32768 and outcome.only == {"big"}
    body, outcome = admit(10000)
    assert body["max_tokens"] == 10000 and outcome.only == {"big"}
    assert admit(100)[1] is None
    outcome = admit(100, role="developer")[1]
    assert outcome.rejection.message.startswith("the developer role is not served here")
