"""A loopback proxy to PostgreSQL that counts round trips: what a client sends and then waits for.

In PostgreSQL's protocol a client waits for the server after a simple Query (`Q`) and after a Sync (`S`), which ends
a group of extended-protocol messages (Parse, Bind, Describe, Execute) sent together. So each `Q` and each `S` is
one round trip, whatever the statements; the query loggers of asyncpg see statements, not round trips (a cursor's
messages are not logged at all).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from typing import Self

from sqlalchemy.engine import make_url

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_WAITS_FOR_THE_SERVER = frozenset(b"QS")


class RoundTripCounter:
    """`with RoundTripCounter(pg_url) as counter:` connect to `counter.url`; `counter.round_trips` counts, over all
    connections, the messages after which a client waits for the server."""

    def __init__(self, pg_url: str) -> None:
        target = make_url(pg_url)
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = target.set(host="127.0.0.1", port=self._listener.getsockname()[1]).render_as_string(
            hide_password=False
        )
        self._lock = threading.Lock()
        self._round_trips = 0
        threading.Thread(target=self._accept, name="round-trip-counter", daemon=True).start()

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with source, sink:
            try:
                while data := source.recv(65_536):
                    sink.sendall(data)
            except OSError:
                pass
            _shut(source, sink)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Forward what the client sends, counting its messages: untyped ones first (an SSL or GSS request, then the
        startup message: length and body), then typed ones (a type byte, then length and body)."""
        pending = bytearray()
        started = False
        with client, upstream:
            try:
                while data := client.recv(65_536):
                    upstream.sendall(data)
                    pending += data
                    started = self._count(pending, started)
            except OSError:
                pass
            _shut(client, upstream)

    def _count(self, pending: bytearray, started: bool) -> bool:
        while True:
            head = 1 if started else 0
            if len(pending) < head + 4:
                return started
            (length,) = struct.unpack_from("!i", pending, head)
            if len(pending) < head + length:
                return started
            if started:
                if pending[0] in _WAITS_FOR_THE_SERVER:
                    with self._lock:
                        self._round_trips += 1
            elif struct.unpack_from("!i", pending, 4)[0] not in (_SSL_REQUEST, _GSS_REQUEST):
                started = True  # the startup message: typed messages follow
            del pending[: head + length]


def _shut(*ends: socket.socket) -> None:
    """Shut down, not only close: a close does not wake the other thread reading the same socket (nor send the FIN
    while it reads)."""
    for end in ends:
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
