"""A backend as the requests written to it name it: its address and its own credentials."""

from __future__ import annotations


class UpstreamTarget:
    """What is fixed per backend in every request written to it, rendered once."""

    __slots__ = ("addr_line", "auth_line", "host_line")

    def __init__(self, address: str, api_key: str | None):
        self.host_line = b" HTTP/1.1\r\nhost: " + address.encode() + b"\r\n"
        self.auth_line = (b"authorization: Bearer " + api_key.encode() + b"\r\n"
                          if api_key is not None else b"")
        # Shown to the client as X-Upstream-Addr (when exposed).
        self.addr_line = b"x-upstream-addr: " + address.encode() + b"\r\n"
