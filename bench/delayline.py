"""A TCP delay line: put WAN latency and a shared link rate in front of a registry.

Every tool under test talks to the registry through the same line, so all of
them pay the same round trips. It relays bytes only (the `Host` header and the
`Location` URLs the registry builds from it pass through untouched) and runs as
its own process, so the benchmark's interpreter and GIL stay out of the data path.

Model, per delay line:
- a new connection costs one RTT (the TCP handshake) before its first byte
  leaves: the upstream connection is opened only `rtt` after the accept;
- every chunk read in either direction is delivered one-way delay (`rtt / 2`)
  later, in order;
- each direction has one link shared by all connections of the line: a chunk
  of n bytes occupies it n * 8 / rate seconds, so it is delivered at
  max(arrival + rtt / 2, link free) + transmission time;
- at most `window` bytes per connection and direction are in flight (read and
  not yet written); the reader waits beyond that, so memory stays bounded. The
  default (8 MiB) holds the bandwidth-delay product of 1 Gbit/s x 40 ms;
- EOF is forwarded as a half-close, a reset as a close, both after the delay.

Self-check (a registry on 127.0.0.1:5000; connect + request: ~80 ms):

    python -m bench.delayline --upstream 127.0.0.1:5000 --rtt-ms 40 &
    curl -so /dev/null -w '%{time_total}\\n' http://127.0.0.1:PORT/v2/   # PORT: printed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import IO

__all__ = ["DEFAULT_WINDOW", "DelayLine"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WINDOW = 8 * 1024 * 1024
_CHUNK = 256 * 1024  # a read's upper bound: 2 ms at 1 Gbit/s, few wake-ups per MiB
_READY_PREFIX = "listening "
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0
_PARENT_POLL = 0.5


class _Link:
    """One direction of the line's link, shared by all its connections (a FIFO)."""

    def __init__(self, one_way: float, rate_mbit: float) -> None:
        self.one_way = one_way
        self.seconds_per_byte = 8.0 / (rate_mbit * 1e6)
        self.free_at = 0.0

    def schedule(self, size: int, arrival: float) -> float:
        """Reserve the link for `size` bytes arriving now; return their delivery time."""
        deliver_at = max(arrival + self.one_way, self.free_at) + size * self.seconds_per_byte
        self.free_at = deliver_at
        return deliver_at


class _Pipe:
    """One direction of one connection: read, delay, write, bounded by `window` bytes."""

    def __init__(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        window: int,
    ) -> None:
        self._source, self._sink, self._link, self._window = source, sink, link, window
        self._items: asyncio.Queue[tuple[float, bytes | None, bool]] = asyncio.Queue()
        self._room = asyncio.Event()
        self._in_flight = 0
        self._last_at = 0.0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read())
            group.create_task(self._deliver())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        reset = False
        while True:
            while self._in_flight >= self._window:
                self._room.clear()
                await self._room.wait()
            try:
                data = await self._source.read(_CHUNK)
            except OSError:  # a reset: the peer is gone
                data, reset = b"", True
            now = loop.time()
            if not data:  # EOF or reset: after the last byte, one way later
                self._push(max(now + self._link.one_way, self._last_at), None, reset)
                return
            self._in_flight += len(data)
            self._push(self._link.schedule(len(data), now), data, False)

    def _push(self, at: float, data: bytes | None, reset: bool) -> None:
        self._last_at = at
        self._items.put_nowait((at, data, reset))  # (delivery time, data or end, reset)

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        broken = False  # the sink failed: drop what is left, keep the window moving
        while True:
            at, data, reset = await self._items.get()
            if (delay := at - loop.time()) > 0:
                await asyncio.sleep(delay)
            if data is None:
                self._finish(reset or broken)
                return
            if not broken and not self._sink.is_closing():
                try:
                    self._sink.write(data)
                    await self._sink.drain()
                except OSError:
                    broken = True
            self._in_flight -= len(data)
            self._room.set()

    def _finish(self, close: bool) -> None:
        """Forward the source's end: a half-close, or a close after a reset."""
        if self._sink.is_closing():
            return
        if close or not self._sink.can_write_eof():
            self._sink.close()
            return
        with contextlib.suppress(OSError):
            self._sink.write_eof()


class _Relay:
    """The server side: one upstream connection per accepted client connection."""

    def __init__(self, upstream: tuple[str, int], rtt: float, rate_mbit: float, window: int):
        self._upstream, self._rtt, self._window = upstream, rtt, window
        self._to_upstream = _Link(rtt / 2, rate_mbit)
        self._to_client = _Link(rtt / 2, rate_mbit)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await asyncio.sleep(self._rtt)  # the handshake a real connection would cost
            host, port = self._upstream
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    host, port, limit=_CHUNK
                )
            except OSError:
                return  # refused upstream: the client sees its connection closed
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    _Pipe(reader, upstream_writer, self._to_upstream, self._window).run()
                )
                group.create_task(
                    _Pipe(upstream_reader, writer, self._to_client, self._window).run()
                )
        except asyncio.CancelledError:
            pass  # shutdown: asyncio's callback logs a connection task that ends cancelled
        finally:
            self._tasks.discard(task)
            await _close(writer)
            if upstream_writer is not None:
                await _close(upstream_writer)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # CancelledError: a shutdown that catches a connection while it closes.
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """End the line when the process that started it is gone (re-parented)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(_PARENT_POLL)
    stop.set()


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    relay = _Relay((host, int(port)), args.rtt_ms / 1000, args.rate_mbit, args.window_bytes)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", args.port, limit=_CHUNK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(args.parent_pid, stop)) if args.parent_pid else None
    listen_port = server.sockets[0].getsockname()[1]
    print(f"{_READY_PREFIX}127.0.0.1:{listen_port}", flush=True)
    await stop.wait()
    server.close()
    await relay.shutdown()
    await server.wait_closed()
    if watcher is not None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.delayline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--rate-mbit", type=float, default=1000.0, help="shared link rate")
    parser.add_argument("--window-bytes", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when it is gone")
    args = parser.parse_args(argv)
    problem = _problem(args.upstream, args.rtt_ms, args.rate_mbit, args.window_bytes)
    if problem is not None:
        parser.error(problem)  # exit code 2
    return args


def _problem(upstream: str, rtt_ms: float, rate_mbit: float, window: int) -> str | None:
    """What is wrong with these settings, or None."""
    host, _, port = upstream.rpartition(":")
    if not host or not port.isdigit():
        return f"--upstream {upstream!r} is not HOST:PORT (e.g. 127.0.0.1:5000)"
    if rtt_ms < 0:
        return f"--rtt-ms {rtt_ms} is negative; give 0 or more"
    if rate_mbit <= 0:
        return f"--rate-mbit {rate_mbit} must be positive"
    if window < 1:
        return f"--window-bytes {window} must be positive"
    return None


def main(argv: list[str] | None = None) -> None:
    warnings.simplefilter("always", ResourceWarning)  # a leak shows in the line's stderr
    asyncio.run(_serve(_parse_args(argv)))


class DelayLine:
    """A delay line child process in front of `upstream` (`"127.0.0.1:PORT"`).

    Use as a context manager, or `start()` / `stop()`; `host` is where to connect.
    `stderr` (a file) receives the child's diagnostics; by default it inherits ours.
    """

    def __init__(
        self,
        upstream: str,
        rtt_ms: float = 40.0,
        rate_mbit: float = 1000.0,
        *,
        window_bytes: int = DEFAULT_WINDOW,
        stderr: IO[bytes] | IO[str] | None = None,
    ) -> None:
        problem = _problem(upstream, rtt_ms, rate_mbit, window_bytes)
        if problem is not None:
            raise ValueError(f"DelayLine: {problem}")
        self.upstream, self.rtt_ms, self.rate_mbit = upstream, rtt_ms, rate_mbit
        self.window_bytes = window_bytes
        self._stderr = stderr
        self._process: subprocess.Popen[str] | None = None
        self._host: str | None = None

    def start(self) -> DelayLine:
        """Launch the child and return once it listens."""
        if self._process is not None:
            raise RuntimeError("this delay line is already started")
        argv = [sys.executable, "-m", "bench.delayline", "--upstream", self.upstream]
        argv += ["--rtt-ms", str(self.rtt_ms), "--rate-mbit", str(self.rate_mbit)]
        argv += ["--window-bytes", str(self.window_bytes), "--parent-pid", str(os.getpid())]
        self._process = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            self._host = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> str:
        process = self._process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line.startswith(_READY_PREFIX):
            code = process.poll()
            state = "did not start listening in time" if code is None else f"exited ({code})"
            raise RuntimeError(f"delay line to {self.upstream} {state}: {line!r}")
        return line[len(_READY_PREFIX) :].strip()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT` of the running line."""
        if self._host is None:
            raise RuntimeError("the delay line is not started")
        return self._host

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        """Terminate the child (killed if it does not end in time) and reap it."""
        process, self._process, self._host = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> DelayLine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
