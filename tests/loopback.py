"""Loopback helpers shared by the test suites."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackProxy:
    """A TCP proxy on 127.0.0.1 (`port`) to 127.0.0.1:`target_port`, until the `with` block ends: each connection a
    client opens is handed to `_serve` in a thread of its own, with its place in the order of connections (0 for the
    first), and forwarded (`_upstream`, `forward`) as the subclass needs: counting, recording or cutting what passes."""

    def __init__(self, target_port: int, *, name: str) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._listener.close()

    def _accept(self) -> None:
        for index in itertools.count():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, index), daemon=True).start()

    def _serve(self, client: socket.socket, index: int) -> None:
        """Forward one client connection, both ways, until either end closes it."""
        upstream = self._upstream()
        threading.Thread(target=forward, args=(client, upstream), daemon=True).start()
        forward(upstream, client)

    def _upstream(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.target_port))


def forward(source: socket.socket, sink: socket.socket, seen: Callable[[bytes], None] | None = None) -> None:
    """Send on to `sink` what `source` receives (each piece shown to `seen` first) until either closes, then shut both
    down."""
    with source, sink:
        try:
            while data := source.recv(65_536):
                if seen is not None:
                    seen(data)
                sink.sendall(data)
        except OSError:
            pass
        shut(source, sink)


def shut(*ends: socket.socket) -> None:
    """Shut down, not only close: a close neither wakes another thread reading the same socket nor sends the FIN while
    it reads."""
    for end in ends:
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
