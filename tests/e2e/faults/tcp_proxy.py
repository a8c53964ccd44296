"""A TCP proxy on a free loopback port whose link can be cut and restored: the database "goes away" for the
processes behind it while the shared PostgreSQL server keeps running for everyone else.

The proxy runs an asyncio loop in a daemon thread of the test process. `cut()` aborts every live connection
(both ends get a reset) and then either refuses new ones (the listening socket is closed: ECONNREFUSED) or
stalls them (accepted, never answered: the client's connect timeout decides). `restore()` listens again on
the same port and forwards as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

CHUNK = 65_536
CALL_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")
Mode = Literal["open", "refuse", "stall"]


class _Link:
    """One client connection and its upstream connection, pumped both ways by two tasks."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Forward `127.0.0.1:<port>` to `target_host:target_port`; `cut()` / `restore()` the link at will."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = 0
        self.mode: Mode = "open"
        self.accepted = 0
        """Connections accepted since start (forwarded, refused after accept, or stalled)."""
        self.aborted = 0
        """Live connections aborted by `cut()`."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._stalled: set[asyncio.StreamWriter] = set()

    # -- control, from the test thread ---------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self, mode: Literal["refuse", "stall"] = "refuse") -> None:
        """Abort every live connection; new ones are refused (`refuse`) or accepted and left hanging (`stall`)."""
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Forward again (on the same port); connections stalled meanwhile are dropped."""
        self._call(self._restore())

    @property
    def live_connections(self) -> int:
        return len(self._links)

    def close(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_SECONDS)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_SECONDS)

    # -- the loop's side ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _cut(self, mode: Literal["refuse", "stall"]) -> None:
        self.mode = mode
        if mode == "refuse":
            await self._close_listener()
        for link in list(self._links):
            link.abort()
            self.aborted += 1
        self._links.clear()

    async def _restore(self) -> None:
        for writer in list(self._stalled):
            writer.transport.abort()
        self._stalled.clear()
        self.mode = "open"
        if self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._close_listener()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        for writer in list(self._stalled):
            writer.transport.abort()
        self._stalled.clear()
        await asyncio.sleep(0)  # let the cancelled pump tasks finish

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "stall":
            self._stalled.add(writer)
            return
        if self.mode == "refuse":  # accepted just before the listener closed
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if not self._forwarding():  # cut while connecting upstream
            up_writer.transport.abort()
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    def _forwarding(self) -> bool:
        return self.mode == "open"

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        # One side ended: end the whole link (PostgreSQL's protocol has no use for half-open connections).
        if link in self._links:
            self._links.discard(link)
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            for writer in (link.client, link.upstream):
                writer.close()
