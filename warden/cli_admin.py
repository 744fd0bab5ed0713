"""Reaching a running gateway's admin API from the command line (the `quarantine`,
`backends` and `reload` commands): which gateway, and one JSON call with its errors printed
plainly. An admin key, when the gateway wants one, comes from `WARDEN_ADMIN_KEY` (never a
flag: it would show in `ps` and in the shell's history)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from warden.settings import load_or_explain

ADMIN_KEY = "WARDEN_ADMIN_KEY"


def add_where(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="the gateway (default: http://127.0.0.1:8000)")
    where.add_argument("-c", "--config", help="reach the gateway this config runs (at its "
                       "`admin_listen` address, else its `listen`)")
    parser.set_defaults(admin_tls=None)


def gateway_url(args: argparse.Namespace) -> str | None:
    """The gateway's base URL (None: its config is invalid; the reasons were printed)."""
    if args.url:
        return args.url.rstrip("/")
    if args.config:
        settings = load_or_explain(args.config)
        if settings is None:
            return None
        # The admin API's address: its own listener (plain HTTP), else the main one (HTTPS
        # when it has TLS).
        host, port = settings.admin_listen or settings.listen
        scheme = "https" if settings.tls is not None and settings.admin_listen is None \
            else "http"
        if scheme == "https" and settings.tls is not None:
            args.admin_tls = own_certificate(settings.tls.cert)
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    return "http://127.0.0.1:8000"


def own_certificate(cert: Path) -> ssl.SSLContext:
    """TLS to the gateway a config runs: its own certificate is what is trusted (it is
    reached at the address its config listens on, often 127.0.0.1, which a certificate for
    its public name does not carry; and its CA may be a private one)."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # (the leaf itself, trusted)
    return context


def call(command: str, url: str, body: dict | None = None, *, post: bool = False,
         expect: tuple[str, ...] = (), tls: ssl.SSLContext | None = None) -> dict | None:
    """GET `url` (POST with `body` or `post`); its JSON answer (an object with the `expect`ed
    members), or None with the reason printed as `command: ...` (one line: a port that
    answers something else is a mistake, not a traceback). `tls`: what an https gateway is
    trusted by (`gateway_url` sets `args.admin_tls` when it reads a config)."""
    data = json.dumps(body).encode() if body is not None else b"" if post else None
    headers = {"Content-Type": "application/json"}
    admin_key = os.environ.get(ADMIN_KEY)
    if admin_key:
        headers["Authorization"] = f"Bearer {admin_key}"
    try:
        request = urllib.request.Request(url, data=data, method="POST" if data is not None
                                         else "GET", headers=headers)
    except ValueError:
        print(f"{command}: {url} is not a URL (expected http://host:port)", file=sys.stderr)
        return None
    try:
        with urllib.request.urlopen(request, timeout=30, context=tls) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        print(f"{command}: {url} answered {e.code}: {_message(e.read())}", file=sys.stderr)
    except OSError as e:
        reason = getattr(e, "reason", None)  # (urllib's URLError wraps the TLS one)
        hint = " (it is not the certificate the config names: renewed and not reloaded yet? " \
            "SIGHUP reloads it)" if tls is not None and \
            isinstance(reason, ssl.SSLCertVerificationError) else ""
        print(f"{command}: cannot reach {url}: {e}{hint}", file=sys.stderr)
    except http.client.HTTPException as e:
        print(f"{command}: {url} did not answer HTTP ({e.__class__.__name__}: is it a Warden "
              "gateway?)", file=sys.stderr)
    except ValueError:
        print(f"{command}: {url} did not answer JSON (is it a Warden gateway?)",
              file=sys.stderr)
    else:
        if isinstance(answer, dict) and all(name in answer for name in expect):
            return answer
        wanted = f" with {', '.join(expect)}" if expect else ""
        print(f"{command}: {url} did not answer as a Warden gateway of this version does "
              f"(a JSON object{wanted})", file=sys.stderr)
    return None


def _message(body: bytes) -> str:
    """An error answer in one line: the OpenAI envelope's message, else the text as is."""
    text = body.decode("utf-8", "replace")
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())
    return message if isinstance(message, str) else text
