"""A small hand-written reportgen server for the client's logic: it answers httpx requests from a script of
responses and records what it was asked. Time is a fake clock that the server's waits and the client's sleeps
advance; the real server is exercised in tests/e2e/test_client.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reportgen_client import Client

JOB_ID = "7c927bcb-2040-4490-b08b-535cfb0f841c"
REPORT_ID = "00000000-0000-4000-8000-000000000001"
BASE = "http://reportgen.test"


def job_body(status: str = "Running", progress: int = 40, **extra: Any) -> dict[str, Any]:
    return {
        "jobId": JOB_ID,
        "reportId": REPORT_ID,
        "status": status,
        "progress": progress,
        "format": "csv",
        "parameters": {},
        "attempts": 1,
        "createdAt": "2026-12-04T08:40:22Z",
        "startedAt": None,
        "finishedAt": None,
        "expiresAt": None,
        "error": None,
        "statusUrl": f"{BASE}/api/v1/jobs/{JOB_ID}",
        "resultUrl": f"{BASE}/api/v1/jobs/{JOB_ID}/result",
        **extra,
    }


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeServer:
    """Answers each request with the next handler of `script` (the last one repeats)."""

    script: list[Handler]
    now: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.script[min(len(self.requests), len(self.script)) - 1]
        return handler(request)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def client(self, retries: int = 3) -> Client:
        return Client(
            BASE,
            "token",
            retries=retries,
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleep,
            clock=lambda: self.now,
        )
