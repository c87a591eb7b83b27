"""Two misbehaving loopback peers, in plain socket code.

- `StalledServer` accepts connections, reads what it is sent, and never
  answers: a token service (or any HTTP peer) that hangs. A client without
  a read timeout blocks on it forever.
- `SlowRelay` forwards TCP to an upstream `host:port`, holding the first
  `slow_connections` connections `delay` seconds before it forwards their
  first bytes: a TLS registry whose first handshake is slow (a cold load
  balancer, a busy TLS terminator), while later connections are fast.

Both listen on a free `127.0.0.1` port, run in daemon threads, count the
connections they accepted, and close every socket on `stop()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["SlowRelay", "StalledServer"]

_PIECE = 64 * 1024


class _Listener:
    """A loopback listening socket whose connections are handled in threads."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.connections = 0

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.getsockname()[1])

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> _Listener:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._keep(conn)
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self.handle, args=(conn, number), daemon=True).start()

    def handle(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Close the listener and every connection (idempotent)."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> _Listener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StalledServer(_Listener):
    """Accept, read, never answer."""

    @property
    def url(self) -> str:
        """An HTTP URL on the stalled port, e.g. a token realm."""
        return f"http://{self.host}/token"

    def handle(self, conn: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(_PIECE):
                pass


class SlowRelay(_Listener):
    """Relay TCP to `upstream`, the first `slow_connections` connections `delay` s late."""

    def __init__(self, upstream: str, *, delay: float, slow_connections: int = 1) -> None:
        super().__init__()
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self.delay = delay
        self.slow_connections = slow_connections

    def handle(self, conn: socket.socket, number: int) -> None:
        if number <= self.slow_connections and self._stopped.wait(self.delay):
            return
        try:
            upstream = socket.create_connection(self._upstream, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        self._keep(upstream)
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until EOF, then half-close the other side."""
    with contextlib.suppress(OSError):
        while data := source.recv(_PIECE):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
