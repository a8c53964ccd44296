"""A real webhook receiver on 127.0.0.1 for the tests: an HTTP server in a thread that keeps what it receives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from tests.loopback import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Answers each POST with the next of `statuses` (the last one again once they run out), `extra_body` bytes of
    body, and `location` as a Location header when given. `start()` on `port` (a free one by default)."""

    def __init__(
        self,
        *statuses: int,
        port: int | None = None,
        extra_body: bytes = b"",
        location: str | None = None,
        hang: bool = False,
    ):
        """`hang`: take each request in and never answer it (until `stop()`), as a receiver that froze."""
        self.statuses = list(statuses) or [204]
        self.hang = hang
        self._stopping = threading.Event()
        self.port = port or free_port()
        self.extra_body = extra_body
        self.location = location
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        with self._lock:
            self.received.append(Received(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body))
        if self.hang:
            self._stopping.wait()
            return
        with self._lock:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        handler.send_response(status)
        if self.location:
            handler.send_header("Location", self.location)
        handler.send_header("Content-Length", str(len(self.extra_body)))
        handler.end_headers()
        handler.wfile.write(self.extra_body)

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
