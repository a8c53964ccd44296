"""Where the real services for integration and e2e tests are, and what to do when one is missing."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

DATABASE_URL = os.environ.get("REPORTGEN_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REPORTGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1"


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, url: str) -> None:
    """Skip with a visible reason when a service is down, or fail when REPORTGEN_REQUIRE_SERVICES=1."""
    if reachable(url):
        return
    message = f"{name} is not reachable at {urlsplit(url).netloc}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and REPORTGEN_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)
