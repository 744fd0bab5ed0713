"""TLS to a backend (an `https://` URL): verified against the system's trust store or a CA
bundle of the config's, unless verification is turned off for it."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca: Path | None, verify: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:  # (the config's explicit choice: a test rig, a self-signed lab engine)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
