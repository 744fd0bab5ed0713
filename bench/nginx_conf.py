"""nginx configs: a static fast backend, and a reverse proxy configured as the seeds configure
theirs (keep-alive upstream, HTTP/1.1, `proxy_buffering off`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

_COMMON = """
worker_processes 1;
daemon off;
pid {dir}/nginx-{name}.pid;
error_log {dir}/nginx-{name}-error.log warn;
events {{ worker_connections 8192; use epoll; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body-{name};
    proxy_temp_path {dir}/proxy-{name};
    fastcgi_temp_path {dir}/fastcgi-{name};
    uwsgi_temp_path {dir}/uwsgi-{name};
    scgi_temp_path {dir}/scgi-{name};
    keepalive_requests 1000000;
    {body}
}}
"""

# A small chat completion, as a fast backend would return it.
COMPLETION = json.dumps({
    "id": "cmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}, separators=(",", ":"))

STATIC_BACKEND = """
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            client_body_buffer_size 64k;
            default_type application/json;
            return 200 '{body}';
        }}
    }}
"""

PROXY = """
    upstream llm_backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 100M;
        client_body_buffer_size 128k;
        location / {{
            proxy_pass http://llm_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 600s;
            proxy_connect_timeout 5s;
            add_header X-Upstream-Addr $upstream_addr always;
            add_header X-Upstream-Status $upstream_status always;
        }}
    }}
"""


def nginx_command(workdir: Path, name: str, body: str) -> list[str]:
    conf = workdir / f"nginx-{name}.conf"
    conf.write_text(_COMMON.format(dir=workdir, name=name, body=body))
    subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(workdir)], check=True)
    return ["nginx", "-c", str(conf), "-p", str(workdir)]
