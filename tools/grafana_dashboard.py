"""The Grafana dashboard of Warden and the vLLM fleet behind it (deploy/grafana/warden.json),
generated from the panels below. Run after changing them:

    python -m tools.grafana_dashboard          # rewrite deploy/grafana/warden.json
    python -m tools.grafana_dashboard --check  # exit 1 if it is out of date (the tests do this)

Every query is run against a real Prometheus by tests/integration/test_dashboard.py, with the
template variables substituted (`VARIABLES`); the panels marked core must return data there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "grafana" / "warden.json"

GW = 'instance=~"$instance"'                         # the gateways chosen
GWM = f'{GW},model=~"$model"'                         # ... and the models
ENG = 'model_name=~"$model"'                          # vLLM's own label for the model
RATE = "[$__rate_interval]"

# What the tests substitute for Grafana's variables.
VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$model": ".*"}


def rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def quantile(q: float, metric: str, selector: str, by: str) -> str:
    return (f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}{RATE})))")


def quantiles(metric: str, selector: str, by: str) -> list[tuple[str, str]]:
    return [(quantile(0.5, metric, selector, by), f"p50 {{{{{by}}}}}"),
            (quantile(0.99, metric, selector, by), f"p99 {{{{{by}}}}}")]


REQUESTS = "warden_requests_total"
ALL = rate(REQUESTS, GWM, "model")
ERRORS = rate(REQUESTS, f'{GWM},status=~"5.."', "model")

# (row title, [(panel title, unit, [(expr, legend)], core)])
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], bool]]]] = [
    ("Traffic", [
        ("Request rate by model", "reqps", [(ALL, "{{model}}")], True),
        ("Request rate by backend", "reqps", [(rate(REQUESTS, GWM, "backend"), "{{backend}}")],
         False),
        ("In flight by backend", "short",
         [(f"sum by (backend) (warden_backend_in_flight{{{GW}}})", "{{backend}}")], False),
        ("Tokens per second by model", "short",
         [(rate("warden_prompt_tokens_total", GWM, "model"), "prompt {{model}}"),
          (rate("warden_completion_tokens_total", GWM, "model"), "completion {{model}}")],
         False),
    ]),
    ("Latency (as clients see it)", [
        ("Time to first token", "s",
         quantiles("warden_time_to_first_token_seconds", GWM, "model"), True),
        ("Time per output token", "s",
         quantiles("warden_time_per_output_token_seconds", GWM, "model"), False),
        ("Request duration by endpoint", "s",
         quantiles("warden_request_duration_seconds", GWM, "endpoint"), False),
        ("Queue time in the gateway", "s",
         quantiles("warden_request_queue_seconds", GWM, "model"), False),
        ("Event loop: time lost to stalls, by cause", "percentunit",
         [(rate("warden_event_loop_stall_seconds_total", GW, "instance, cause"),
           "{{instance}} {{cause}}")], False),
    ]),
    ("Errors and verdicts", [
        ("Error rate (5xx) by model", "percentunit",
         [(f"({ERRORS} or {ALL} * 0) / {ALL}", "{{model}}")], True),
        ("Answers by status", "reqps", [(rate(REQUESTS, GWM, "status"), "{{status}}")], False),
        ("Answers by verdict", "reqps", [(rate(REQUESTS, GWM, "verdict"), "{{verdict}}")],
         False),
        ("Retries by backend", "reqps",
         [(rate("warden_upstream_retries_total", GW, "backend"), "{{backend}}")], False),
        ("Refused before read whole", "reqps",
         [(rate("warden_requests_refused_total", GW, "code"), "{{code}}")], False),
    ]),
    ("Tenants", [
        ("Requests by tenant", "reqps",
         [(rate("warden_tenant_requests_total", GWM, "tenant"), "{{tenant}}")], False),
        ("Refused by limits (429) by tenant", "reqps",
         [(rate("warden_tenant_requests_total", f'{GWM},status="429"', "tenant"),
           "{{tenant}}")], False),
        ("Completion tokens per second by tenant", "short",
         [(rate("warden_completion_tokens_total", f'{GWM},tenant!="none"', "tenant"),
           "{{tenant}}")], False),
    ]),
    ("Fleet and engine signals", [
        ("KV cache usage (vLLM)", "percentunit",
         [(f"max by (instance) (vllm:kv_cache_usage_perc{{{ENG}}})", "{{instance}}")], True),
        ("Requests waiting (vLLM queue)", "short",
         [(f"sum by (instance) (vllm:num_requests_waiting{{{ENG}}})", "{{instance}}")], True),
        ("Requests running (vLLM)", "short",
         [(f"sum by (instance) (vllm:num_requests_running{{{ENG}}})", "{{instance}}")], False),
        ("Engine time to first token (vLLM)", "s",
         quantiles("vllm:time_to_first_token_seconds", ENG, "instance"), False),
        ("Engine inter-token latency (vLLM)", "s",
         quantiles("vllm:inter_token_latency_seconds", ENG, "instance"), False),
        ("Preemptions (vLLM)", "ops",
         [(rate("vllm:num_preemptions_total", ENG, "instance"), "{{instance}}")], False),
        ("Prefix cache hit rate (vLLM)", "percentunit",
         [(f"{rate('vllm:prefix_cache_hits_total', ENG, 'instance')} / "
           f"{rate('vllm:prefix_cache_queries_total', ENG, 'instance')}", "{{instance}}")],
         False),
        ("Backends available (gateway's view)", "short",
         [(f"max by (backend) (warden_backend_available{{{GW}}})", "{{backend}}")], False),
        ("Backends not ready, by state", "short",
         [(f'max by (backend, state) (warden_backend_state{{{GW},state!="ready"}}) == 1',
           "{{backend}} {{state}}")], False),
        ("Breaker (0 closed, 1 half-open, 2 open)", "short",
         [(f"max by (backend) (warden_backend_breaker_state{{{GW}}})", "{{backend}}")], False),
        ("Backend failures", "reqps",
         [(rate("warden_backend_failures_total", GW, "backend"), "{{backend}}")], False),
        ("Routing score", "short",
         [(f"max by (backend) (warden_backend_score{{{GW}}})", "{{backend}}")], False),
    ]),
    ("Guard, quarantine, incidents", [
        ("Guard decisions by rule", "reqps",
         [(rate("warden_guard_decisions_total", GW, "rule, action"), "{{rule}} {{action}}")],
         False),
        ("Quarantine entries", "short",
         [(f"sum by (state) (warden_quarantine_entries{{{GW}}})", "{{state}}")], False),
        ("Quarantine probes and waits", "ops",
         [(rate("warden_quarantine_probes_total", GW, "outcome"), "probe {{outcome}}"),
          (rate("warden_quarantine_waits_total", GW, "result"), "wait {{result}}")], False),
        ("Incidents (last hour) by backend", "short",
         [(f"sum by (backend) (increase(warden_incidents_total{{{GW}}}[1h]))",
           "{{backend}}")], False),
    ]),
    ("Flight recorder", [
        ("Records written", "ops",
         [(f"sum(rate(warden_recorder_records_total{{{GW}}}{RATE}))", "records")], False),
        ("Records lost by cause", "ops",
         [(rate("warden_recorder_dropped_total", GW, "cause"), "{{cause}}")], False),
        ("Records waiting", "short",
         [(f"sum by (instance) (warden_recorder_queued{{{GW}}})", "{{instance}}")], False),
        ("Recorder disk", "bytes",
         [(f"sum by (instance) (warden_recorder_disk_bytes{{{GW}}})", "{{instance}}")], False),
        ("PostgreSQL sink", "ops",
         [(rate("warden_recorder_postgres_records_total", GW, "outcome"), "{{outcome}}")],
         False),
    ]),
    ("Limits", [
        ("Refused by limits (429)", "reqps",
         [(rate(REQUESTS, f'{GWM},status="429"', "model"), "{{model}}")], False),
        ("Limits store up", "short",
         [(f"min by (instance) (warden_limits_store_up{{{GW}}})", "{{instance}}")], False),
        ("Admitted unchecked / refused, store down", "reqps",
         [(f"sum(rate(warden_limits_admitted_unchecked_total{{{GW}}}{RATE}))", "unchecked"),
          (f"sum(rate(warden_limits_refused_unavailable_total{{{GW}}}{RATE}))", "refused")],
         False),
        ("Request bodies in memory", "bytes",
         [(f"sum by (instance) (warden_request_body_bytes{{{GW}}})", "{{instance}}")], False),
    ]),
]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], x: int,
          y: int) -> dict:
    return {
        "id": pid, "type": "timeseries", "title": title, "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     "refId": chr(ord("A") + i)} for i, (expr, legend) in enumerate(targets)],
    }


def variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}, "sort": 1}


def dashboard() -> dict:
    panels: list[dict] = []
    y = 0
    for row, members in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for i, (title, unit, targets, _) in enumerate(members):
            panels.append(panel(len(panels) + 1, title, unit, targets, (i % 3) * 8,
                                y + (i // 3) * 8))
        y += ((len(members) + 2) // 3) * 8
    return {
        "title": "Warden and its vLLM fleet", "uid": "warden-gateway", "editable": True,
        "schemaVersion": 39, "version": 1, "tags": ["warden", "vllm"], "timezone": "",
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            variable("instance", "Gateway", "label_values(warden_requests_total, instance)"),
            variable("model", "Model", "label_values(warden_requests_total, model)"),
        ]},
        "panels": panels,
    }


def queries() -> list[tuple[str, str, bool]]:
    """(panel title, expr, core) of every query, as the dashboard holds them."""
    return [(title, expr, core) for _, members in ROWS
            for title, _, targets, core in members for expr, _ in targets]


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if out of date")
    args = parser.parse_args(argv)
    if args.check:
        if not OUT.exists() or OUT.read_text() != render():
            print(f"{OUT.relative_to(ROOT)} is out of date: python -m tools.grafana_dashboard")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
