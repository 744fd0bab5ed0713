"""deploy/prometheus/alerts.yml and deploy/grafana/warden.json: the rules load and pass their
unit tests (promtool), read vLLM's current metric names only, and the dashboard is what
tools/grafana_dashboard.py generates. (Its queries run on a real Prometheus in
tests/integration/test_observability.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tools import grafana_dashboard

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "deploy" / "prometheus"
FIXTURES = ROOT / "tests" / "fixtures" / "vllm"
# Names vLLM removed (0.10: the gpu_ prefix; 0.32: the per-token histogram's old name), which
# a widely copied alert still reads: an alert on them never fires.
REMOVED = {"vllm:gpu_cache_usage_perc", "vllm:gpu_prefix_cache_hits",
           "vllm:gpu_prefix_cache_queries", "vllm:time_per_output_token_seconds"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus"
    return subprocess.run([path, *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def test_the_rules_load_and_pass_their_unit_tests():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"]
              if case["exp_alerts"]}
    assert alerts == firing


def vllm_names(text: str) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", name)
            for name in re.findall(r"vllm:[a-z_]+", text)}


def exported(capture: str) -> set[str]:
    return vllm_names("\n".join(line.split("{")[0].split(" ")[0]
                                for line in (FIXTURES / capture).read_text().splitlines()
                                if line.startswith("vllm:")))


def test_vllm_names_are_the_current_ones():
    alerts = vllm_names((RULES / "alerts.yml").read_text().split("groups:", 1)[1])
    dashboard = vllm_names("\n".join(expr for _, expr, _ in grafana_dashboard.queries()))
    assert alerts and dashboard
    for used in (alerts, dashboard):
        assert not used & REMOVED
        for capture in ("metrics-0.11.0.txt", "metrics-0.32.0.txt"):
            assert used <= exported(capture), (capture, used - exported(capture))


def test_the_dashboard_is_generated_and_has_its_variables():
    assert grafana_dashboard.main(["--check"]) == 0
    board = json.loads(grafana_dashboard.OUT.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "instance", "model"}
    used = set(re.findall(r"\$(\w+)", "".join(e for _, e, _ in grafana_dashboard.queries())))
    assert {f"${name}" for name in used} == set(grafana_dashboard.VARIABLES)
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
