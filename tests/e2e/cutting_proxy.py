"""A loopback TCP proxy whose first connection is closed after `cut_after` bytes of the server's answer: a download
that breaks mid-body. Later connections are forwarded whole. What clients sent is kept per connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class CuttingProxy:
    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.sent: list[bytearray] = []
        """Per connection, in order: the bytes the client sent (its requests)."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

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
            self.sent.append(bytearray())
            limit = self.cut_after if len(self.sent) == 1 else None
            threading.Thread(target=self._forward, args=(client, self.sent[-1], limit), daemon=True).start()

    def _forward(self, client: socket.socket, sent: bytearray, limit: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=self._requests, args=(client, upstream, sent), daemon=True).start()
        answered = 0
        with client, upstream:
            while data := upstream.recv(65_536):
                if limit is not None and answered + len(data) >= limit:
                    client.sendall(data[: limit - answered])
                    break  # closed mid-answer: the client reads an early end of the body
                client.sendall(data)
                answered += len(data)
            for end in (client, upstream):  # shutdown, not just close: it also wakes the thread reading `client`
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _requests(client: socket.socket, upstream: socket.socket, sent: bytearray) -> None:
        try:
            while data := client.recv(65_536):
                sent.extend(data)
                upstream.sendall(data)
        except OSError:
            return
