"""A parsed client request, as the server protocol hands it to a handler."""

from __future__ import annotations


class HttpRequest:
    """One complete HTTP/1.1 request. Header names are lower-cased bytes; `method_bytes` and
    `target` are kept raw (they are forwarded as they came); `received_at` is
    `time.monotonic()` when its last byte arrived."""

    __slots__ = ("body", "client_ip", "headers", "keep_alive", "method", "method_bytes",
                 "path", "query", "received_at", "target")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, keep_alive: bool, client_ip: str, received_at: float):
        self.method_bytes = method
        self.method = method.decode("latin-1")
        self.target = target
        if target.find(b"?") >= 0:  # bytes `in` first tries int(): slower
            path, _, query = target.partition(b"?")
            self.path = path.decode("latin-1")
            self.query = query.decode("latin-1")
        else:
            self.path = target.decode("latin-1")
            self.query = ""
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.client_ip = client_ip
        self.received_at = received_at

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, by lower-case name."""
        for key, value in self.headers:
            if key == name:
                return value
        return None
