"""TLS for the listener: TLS 1.2 and later, the certificate reloadable while it serves.

The listener keeps the context it started with; each handshake is handed the certificate's
newest context as it begins (the SNI callback, which OpenSSL calls for every ClientHello,
with or without a server name), so a reload changes what the next connections get and leaves
the open ones (and their streams) alone. Why a fresh context per reload and not the same one
loaded again: `load_cert_chain` into a live context adds a pair beside the one it has when
their key types differ (ECDSA, then RSA), and clients that accept both keep getting the old
certificate."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A context serving this pair; raises (ssl.SSLError, OSError) if it does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    return context


class ServedCertificate:
    """The listener's context (`context`, for the server's start) and the pair it serves now."""

    def __init__(self, cert: Path, key: Path):
        self.context = server_context(cert, key)
        self._newest = self.context
        self.context.sni_callback = self._hand_newest

    def reload(self, cert: Path, key: Path) -> None:
        """Serve this pair to connections from now on. A pair that does not load raises and
        leaves the one served."""
        self._newest = server_context(cert, key)

    def _hand_newest(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                     context: ssl.SSLContext) -> None:
        if self._newest is not context:
            connection.context = self._newest
