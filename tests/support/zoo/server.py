"""An asyncio HTTP server on a free loopback port, run in a daemon thread.

The relay (`FaultProxy`) and the storage origin (`CdnOrigin`) are both one
of these. `stop()` closes the listener and every client connection before
the loop, so nothing leaks a `ResourceWarning` and no request outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Self

from tests.support.zoo.wire import HEAD_LIMIT

__all__ = ["LoopServer"]

#: Seconds `start()` waits for the server thread to bind its port.
_START_TIMEOUT = 60.0


class LoopServer:
    """Serve `handle(reader, writer)` for every connection; a context manager.

    Args:
        tls: an SSL context to serve HTTPS, or None for plain HTTP.
        name: the thread's name (shows in stack dumps of a hung test).
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None, name: str = "zoo-server"):
        self._tls = tls
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port: int | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (closing it is the caller's job)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Bind a free loopback port and serve in a background thread."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._serve, "127.0.0.1", 0, ssl=self._tls, limit=HEAD_LIMIT
                    )
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        # Binding takes no time, but a loaded machine may not run the thread for a
        # while: wait long, and never return a server without a port.
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"{self._name} did not bind a port within {_START_TIMEOUT:.0f}s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then the loop (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self.handle(reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, to write into images and auth files."""
        if self.port is None:
            raise RuntimeError(f"{self._name} is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """`https` when the server terminates TLS, else `http`."""
        return "https" if self._tls is not None else "http"
