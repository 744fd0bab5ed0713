"""TLS on the gateway's listener (tls.*)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from warden.config.spec import Spec


class TlsSpec(Spec):
    # PEM files: the certificate (its chain after it) and its private key. Read again at every
    # config reload (SIGHUP, `warden reload`): a renewed certificate is served to the next
    # connections, and the open ones carry on.
    cert: Path
    key: Path

    @model_validator(mode="after")
    def _loads(self) -> TlsSpec:
        """The pair must load now: a gateway that cannot serve TLS fails at load, not at its
        first handshake."""
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert,
                                                                                self.key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the certificate {self.cert} with the key "
                             f"{self.key}: {e}") from None
        return self
