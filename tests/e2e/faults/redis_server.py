"""A private `redis-server` for one test: its own port and directory, nothing kept on disk, so it can be stopped,
restarted (which loses every key, like a Redis without persistence) and flushed without touching the shared one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.loopback import free_port

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class PrivateRedis:
    """`redis-server --save "" --appendonly no` on 127.0.0.1:<port>; the port stays the same across restarts."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "redis.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> Self:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH"
        command = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self._popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.starts += 1
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._popen is not None
            if self._popen.poll() is not None:
                raise AssertionError(f"redis-server exited at start:\n{self.log.read_text(errors='replace')}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} did not answer within {START_TIMEOUT_SECONDS} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL for a crash); with no persistence every key is gone."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(sig)
            try:
                self._popen.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(STOP_TIMEOUT_SECONDS)
        self._popen = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2, socket_connect_timeout=2)

    def flushdb(self, db: int = 0) -> None:
        with self.client(db) as client:
            client.flushdb()

    def dbsize(self, db: int = 0) -> int:
        with self.client(db) as client:
            return int(client.dbsize())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
