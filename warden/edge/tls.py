"""TLS for the listener: TLS 1.2 and later, the certificate reloadable in place.

A context's certificate can be loaded again while it serves: each connection takes the
certificate when its handshake starts, so a reload changes what the next connections get and
leaves the open ones (and their streams) alone."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    return context


def reload_certificate(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load the pair into a scratch context first: a broken pair raises and leaves `context`
    serving the one it had."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    context.load_cert_chain(cert, key)
