"""A TCP proxy in front of a real server, for fault drills: it forwards, hangs (accepts and
never answers) or refuses (stops listening), switched at will. Threads and plain sockets: it
runs beside whatever event loop the code under test has."""

from __future__ import annotations

import contextlib
import socket
import threading

FORWARD, HANG, REFUSE = "forward", "hang", "refuse"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def set(self, mode: str) -> None:
        """Switch mode; the connections open now are cut (clients reconnect)."""
        with self._lock:
            self.mode = mode
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()
            if mode == REFUSE and self._listener is not None:
                with contextlib.suppress(OSError):  # (wakes a blocked accept: Linux)
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            elif mode != REFUSE and self._listener is None:
                self._listen()

    def close(self) -> None:
        self.set(REFUSE)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self.mode == HANG:
                    self._sockets.add(client)  # held open, never answered
                    threading.Thread(target=_drain, args=(client,), daemon=True).start()
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
