"""The Kubernetes PrometheusRule (deploy/kubernetes/prometheusrule.yaml) made from the alert
rules Prometheus loads (deploy/prometheus/alerts.yml), so the two never differ. Run after
changing the alerts:

    python -m tools.k8s_rules          # rewrite deploy/kubernetes/prometheusrule.yaml
    python -m tools.k8s_rules --check  # exit 1 if it is out of date (the tests do this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
HEADER = ("# Generated from deploy/prometheus/alerts.yml by `python -m tools.k8s_rules`: edit "
          "that file, then run it.\n")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, as a person writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule(alerts_text: str) -> str:
    """The PrometheusRule for a Prometheus rule file's text (its `groups` as they are)."""
    rules = yaml.safe_load(alerts_text)
    if not isinstance(rules, dict) or not isinstance(rules.get("groups"), list):
        raise ValueError("not a Prometheus rule file: no `groups` list")
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "warden", "labels": {"app.kubernetes.io/name": "warden"}},
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, width=100,
                              allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if out of date")
    args = parser.parse_args(argv)
    text = prometheus_rule(ALERTS.read_text(encoding="utf-8"))
    if args.check:
        if not RULE.exists() or RULE.read_text(encoding="utf-8") != text:
            print(f"{RULE.relative_to(ROOT)} is out of date: run python -m tools.k8s_rules",
                  file=sys.stderr)
            return 1
        return 0
    RULE.write_text(text, encoding="utf-8")
    print(f"wrote {RULE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
