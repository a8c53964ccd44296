"""Every 503 says why: each one is counted by cause (`reportgen_http_unavailable_total{cause}`), and each cause is
logged at WARNING with the request id and the reason, at most once every `UNAVAILABLE_LOG_EVERY_SECONDS` per
process, so that an outage shows in the log at once without flooding it.

The causes are a fixed set, `UnavailableCause`: what the application's errors name (`database`, `database_pool`,
`database_timeout`, `queue`, `artifact_store`), `not_ready` for a failed readiness check, and `other` for a 503 of
any other origin.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal, get_args

from prometheus_client import Counter

from application.errors import DependencyUnavailable

UNAVAILABLE_LOGGER = "api.unavailable"
UNAVAILABLE_LOG_EVERY_SECONDS = 5.0
"""A cause of 503 answers is logged at most once in this long (per process); the next line says how many went
unlogged in between."""

UnavailableCause = Literal[
    "database", "database_pool", "database_timeout", "queue", "artifact_store", "not_ready", "other"
]
UNAVAILABLE_CAUSES: tuple[UnavailableCause, ...] = get_args(UnavailableCause)
Monotonic = Callable[[], float]

_log = logging.getLogger(UNAVAILABLE_LOGGER)


class ServiceNotReady(Exception):
    """A readiness check failed; `checks` holds every check's result by name."""

    def __init__(self, checks: dict[str, bool]) -> None:
        failing = ", ".join(name for name, ok in checks.items() if not ok) or "the readiness check itself"
        super().__init__(f"Not answering: {failing}.")
        self.checks = checks


def cause_of(exc: BaseException) -> UnavailableCause:
    """What the 503 that answers `exc` was for."""
    if isinstance(exc, DependencyUnavailable):
        return exc.cause
    if isinstance(exc, ServiceNotReady):
        return "not_ready"
    return "other"


class UnavailableAnswers:
    """Counts and logs the 503 answers of one app.

    Runs on the event loop only, so it takes no lock: a 503 costs two dictionary look-ups and a counter increment,
    and a logged one a log record. Every cause's series exists from the start (at 0), so that a rate over it is
    right from the first 503."""

    def __init__(
        self, counter: Counter, *, every: float = UNAVAILABLE_LOG_EVERY_SECONDS, clock: Monotonic = time.monotonic
    ) -> None:
        self._counters = {cause: counter.labels(cause) for cause in UNAVAILABLE_CAUSES}
        self._every = every
        self._clock = clock
        self._last_logged: dict[UnavailableCause, float] = {}
        self._unlogged: dict[UnavailableCause, int] = {}

    def answered(self, request_id: str | None, exc: BaseException) -> None:
        """Record a 503 answered for `exc` to the request `request_id`."""
        cause = cause_of(exc)
        self._counters[cause].inc()
        now = self._clock()
        if now - self._last_logged.get(cause, -math.inf) < self._every:
            self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
            return
        self._last_logged[cause] = now
        fields = {
            "cause": cause,
            "reason": str(exc),
            "error": _error_name(exc.__cause__),
            "request_id": request_id,
            "unlogged_since_last": self._unlogged.pop(cause, 0),
        }
        _log.warning("service unavailable (%s): %s", cause, exc, extra=fields)


def _error_name(error: BaseException | None) -> str | None:
    """The class of the error behind it (`ConnectionRefusedError`): never its message, which may hold SQL."""
    return None if error is None else type(error).__name__
