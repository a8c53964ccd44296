"""A loopback TCP proxy whose first connection is closed after `cut_after` bytes of the server's answer: a download
that breaks mid-body. Later connections are forwarded whole. What clients sent is kept per connection."""

from __future__ import annotations

import socket
import threading

from tests.loopback import LoopbackProxy, forward, shut


class CuttingProxy(LoopbackProxy):
    def __init__(self, target_port: int, cut_after: int) -> None:
        self.cut_after = cut_after
        self._sent: dict[int, bytearray] = {}
        super().__init__(target_port, name="cutting-proxy")

    @property
    def sent(self) -> list[bytearray]:
        """Per connection, in the order they were accepted: the bytes the client sent (its requests)."""
        return [self._sent[index] for index in sorted(self._sent)]

    def _serve(self, client: socket.socket, index: int) -> None:
        sent = self._sent[index] = bytearray()
        limit = self.cut_after if index == 0 else None
        upstream = self._upstream()
        threading.Thread(target=forward, args=(client, upstream, sent.extend), daemon=True).start()
        answered = 0
        with client, upstream:
            while data := upstream.recv(65_536):
                if limit is not None and answered + len(data) >= limit:
                    client.sendall(data[: limit - answered])
                    break  # closed mid-answer: the client reads an early end of the body
                client.sendall(data)
                answered += len(data)
            shut(client, upstream)  # it also wakes the thread reading `client`
