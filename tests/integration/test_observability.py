"""The gateway's /metrics, read by real Prometheus tools: `promtool check metrics` on the live
output after traffic (auth, limits and the recorder on), and the Grafana dashboard's every
query run by a real Prometheus server scraping a gateway and a `warden sim` fleet."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import openai
import pytest
import yaml

from bench.procs import free_port_block
from tests.harness import GatewayThread, SimProcess, http, wait_until
from tools.grafana_dashboard import VARIABLES, queries

ROOT = Path(__file__).resolve().parent.parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
KEY, SLOW_KEY = "wk-observe-test-key-000000001", "wk-observe-test-key-000000002"
MESSAGES = [{"role": "user", "content": "How is the fleet?"}]
# Published by another part of the gateway (the event loop's lag), possibly not yet.
NOT_HERE_YET = {"warden_event_loop_lag_seconds"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install prometheus"
    return path


def traffic(url: str, key: str = "unused") -> None:
    """A plain request, a stream with its usage, a stream without."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=4)
    for include_usage in (True, False):
        for _ in client.chat.completions.create(
                model="sim-model", messages=MESSAGES, max_tokens=6, stream=True,
                stream_options={"include_usage": include_usage}):
            pass


def test_live_metrics_pass_promtool_with_auth_limits_and_recorder(fleet):
    config = {"backends": fleet.backends_config(),
              "auth": {"mode": "required", "tenants": {"search": {}, "batch": {}},
                       "keys": [{"id": "k1", "value": KEY, "tenant": "search"},
                                {"id": "k2", "value": SLOW_KEY, "tenant": "batch",
                                 "limits": {"rpm": 1}}]}}
    gw = GatewayThread(config)
    try:
        traffic(gw.url, KEY)
        slow = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=SLOW_KEY, max_retries=0)
        slow.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=2)
        with pytest.raises(openai.RateLimitError):
            slow.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=2)
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)
        for n in range(5):  # a client's made-up names must not become label values
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model=f"made-up-{n}", messages=MESSAGES)
        gw.wait_idle()
        _, _, body = http("GET", f"{gw.url}/metrics")
        checked = subprocess.run([tool("promtool"), "check", "metrics"], input=body,
                                 capture_output=True, timeout=30)
        assert checked.returncode == 0 and not checked.stdout and not checked.stderr, \
            checked.stdout + checked.stderr
        text = body.decode()
        assert "made-up" not in text
        assert gw.metric("warden_requests_total", 'model="other"') == 5
        assert gw.metric("warden_tenant_requests_total", 'model="sim-model",status="429",'
                                                         'tenant="batch"') == 1
        # Tokens by tenant: the plain answers' and the stream that asked for its usage (the
        # limits ask every stream of a limited key for it; these keys of `search` have none).
        assert gw.metric("warden_completion_tokens_total", 'tenant="search"') == 4 + 6
        assert gw.metric("warden_completion_tokens_total", 'tenant="batch"') == 2
        assert gw.metric("warden_time_to_first_token_seconds_count", 'model="sim-model"') == 2
        assert gw.metric("warden_time_per_output_token_seconds_count") == 2
        assert gw.metric("warden_request_queue_seconds_count") == 4  # (the 429 was never sent)
        for family in ("warden_recorder_records_total", "warden_limits_store_up",
                       "warden_quarantine_entries", "warden_incidents_total",
                       "warden_backend_kv_cache_usage"):
            assert f"\n{family}" in text, family
    finally:
        gw.stop()


@contextlib.contextmanager
def prometheus(tmp_path: Path, gateway: str, nodes: list[str]):
    """Debian's Prometheus scraping the gateway and the nodes every second, with the alerts
    loaded; yields its base URL."""
    port = free_port_block(1)
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": ["alerts.yml"],
              "scrape_configs": [
                  {"job_name": "warden", "static_configs": [{"targets": [gateway]}]},
                  {"job_name": "vllm", "static_configs": [{"targets": nodes}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return http("GET", f"{url}/-/ready", timeout=1)[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout=30, interval=0.1, what="Prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(url: str, expr: str) -> tuple[int, dict]:
    status, _, body = http("GET", f"{url}/api/v1/query?"
                           + urllib.parse.urlencode({"query": expr}))
    return status, json.loads(body)


def has_data(url: str, expr: str) -> bool:
    status, answer = query(url, expr)
    assert status == 200, answer
    return any(not math.isnan(float(sample["value"][1]))
               for sample in answer["data"]["result"])


def rules_now(url: str) -> list[dict]:
    _, _, body = http("GET", f"{url}/api/v1/rules")
    return [rule for group in json.loads(body)["data"]["groups"] for rule in group["rules"]]


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_query_runs_on_prometheus(tmp_path):
    sim = SimProcess(2)
    gw = GatewayThread({"backends": sim.backends_config()})
    try:
        nodes = [sim.url(i).removeprefix("http://") for i in range(sim.nodes)]
        with prometheus(tmp_path, gw.url.removeprefix("http://"), nodes) as url:
            panels = [(title, substituted(expr), core) for title, expr, core in queries()]
            for title, expr, _ in panels:  # each parses (a 400 would say why not)
                status, answer = query(url, expr)
                assert status == 200 and answer["status"] == "success", (title, answer)
            for title, expr, core in panels:
                if core:  # traffic between scrapes until each rate has two samples
                    wait_until(lambda expr=expr: traffic(gw.url) or has_data(url, expr),
                               timeout=60, interval=0.2, what=f"data in {title!r}")
            # The variables' values, as Grafana would list them (label_values).
            _, _, body = http("GET", f"{url}/api/v1/label/model/values?"
                              + urllib.parse.urlencode({"match[]": "warden_requests_total"}))
            assert json.loads(body)["data"] == ["sim-model"]
            status, rules = query(url, 'ALERTS{alertstate="firing"}')
            assert status == 200
            wait_until(lambda: all(rule["health"] == "ok" for rule in rules_now(url)),
                       timeout=30, interval=0.2, what="every rule evaluated without error")
            assert len(rules_now(url)) == 19
            firing = [sample["metric"]["alertname"] for sample in rules["data"]["result"]]
            assert not firing, firing  # (a healthy fleet under light load)
    finally:
        gw.stop()
        sim.stop()
