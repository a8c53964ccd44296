"""A loopback proxy to PostgreSQL that counts round trips: what a client sends and then waits for.

In PostgreSQL's protocol a client waits for the server after a simple Query (`Q`) and after a Sync (`S`), which ends
a group of extended-protocol messages (Parse, Bind, Describe, Execute) sent together. So each `Q` and each `S` is
one round trip, whatever the statements; the query loggers of asyncpg see statements, not round trips (a cursor's
messages are not logged at all).
"""

from __future__ import annotations

import socket
import struct
import threading

from sqlalchemy.engine import make_url

from tests.loopback import LoopbackProxy, forward

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_WAITS_FOR_THE_SERVER = frozenset(b"QS")


class RoundTripCounter(LoopbackProxy):
    """`with RoundTripCounter(pg_url) as counter:` connect to `counter.url`; `counter.round_trips` counts, over all
    connections, the messages after which a client waits for the server."""

    def __init__(self, pg_url: str) -> None:
        target = make_url(pg_url)
        self._lock = threading.Lock()
        self._round_trips = 0
        super().__init__(target.port or 5432, name="round-trip-counter")
        self.url = target.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    def _serve(self, client: socket.socket, index: int) -> None:
        """Forward one connection, counting its messages as the client sends them: untyped ones first (an SSL or GSS
        request, then the startup message: length and body), then typed ones (a type byte, then length and body)."""
        upstream = self._upstream()
        threading.Thread(target=forward, args=(upstream, client), daemon=True).start()
        pending = bytearray()
        started = False

        def seen(data: bytes) -> None:
            nonlocal started
            pending.extend(data)
            started = self._count(pending, started)

        forward(client, upstream, seen)

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
