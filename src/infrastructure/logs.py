"""Logging set-up: structlog for our lines and the standard library's, JSON in production, secrets redacted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing.util
import os
import re
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any, TextIO

import msgspec
import structlog

log = logging.getLogger(__name__)


REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(r"authorization|token|secret|passw|cookie|api[_-]?key|credential|private[_-]?key|jwt", re.I)
_SCRUBS = (  # (cheap substring test, pattern, replacement) applied to every string value of a log line
    ("eyJ", re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # a JWT
    ("://", re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),  # a password in a URL
    (
        "=",
        re.compile(r"([?&][^=&\s]*(?:token|secret|passw|key|signature|auth)[^=&\s]*=)[^&\s#\"']+", re.I),
        rf"\1{REDACTED}",
    ),
    ("earer", re.compile(r"(\bBearer\s+)[^\s\"',]+", re.I), rf"\1{REDACTED}"),
)
JOB_CLOCK_KEY = "_job_clock"
"""Context variable bound by the worker hook: when the delivery started (time.monotonic), for `duration_ms`."""


@lru_cache(maxsize=1024)
def _sensitive(key: str) -> bool:
    """Whether a field's name says it holds a secret (asked of every field of every line; the names repeat)."""
    return _SENSITIVE_KEY.search(key) is not None


class Redactor:
    """A structlog processor that keeps secrets out of log lines, whatever code logged them.

    Values under keys such as `authorization`, `token`, `secret` or `password` (nested too) are replaced; in
    every other string (the message and a rendered traceback included) JWTs, passwords in URLs, values of
    query parameters such as `?token=`, bearer credentials and the configured `secrets` are replaced.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True))

    def __call__(self, logger: object, name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        return {key: REDACTED if _sensitive(key) else self._scrub(value) for key, value in event.items()}

    def field(self, key: str, value: Any) -> Any:
        """One field of a line, as `__call__` would leave it."""
        return REDACTED if _sensitive(key) else self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            for marker, pattern, replacement in _SCRUBS:
                if marker in value:
                    value = pattern.sub(replacement, value)
            return value
        if isinstance(value, Mapping):
            return {k: REDACTED if _sensitive(str(k)) else self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        return value


def _job_duration(logger: object, name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """Give a job's final line (`job succeeded`, ... carries `outcome`) the time since its delivery started."""
    started = event.pop(JOB_CLOCK_KEY, None)
    if isinstance(started, float) and "outcome" in event:
        event.setdefault("duration_ms", round((time.monotonic() - started) * 1000, 1))
    return event


FLUSH_AFTER_SECONDS = 0.05
"""How long a line below WARNING, written on an event loop, may wait before it is written (`journalctl -f` shows it
after at most this); the lines of that moment then leave in one write instead of one write each."""

_LIVE_HANDLERS: weakref.WeakSet[LineHandler] = weakref.WeakSet()


def _flush_live_handlers() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler.flush_quietly()


@cache
def _flush_before_fork() -> None:
    """Once (children inherit it): before a fork (granian's workers), so that no line waits in both processes and is
    written twice."""
    os.register_at_fork(before=_flush_live_handlers)


_flushes_at_exit_in: int | None = None
"""The process whose exit writes the waiting lines: set again in each child, since `multiprocessing` empties the
registry of exit functions that a child inherits."""


def _flush_before_fork_and_at_exit() -> None:
    """When a process ends, `multiprocessing`'s exit function writes the waiting lines; it runs in the main process
    (atexit) and in its children, where atexit handlers do not."""
    global _flushes_at_exit_in
    _flush_before_fork()
    if _flushes_at_exit_in != os.getpid():
        _flushes_at_exit_in = os.getpid()
        multiprocessing.util.Finalize(None, _flush_live_handlers, exitpriority=0)


class LineHandler(logging.StreamHandler[TextIO]):
    """A stream handler that batches writes: a line below WARNING logged on a running event loop waits until a flush
    scheduled on that loop `FLUSH_AFTER_SECONDS` later, which writes every waiting line in one write; a warning or
    worse, and any line logged off an event loop, is written at once (and with it every line before it).

    The lines wait in a list of the handler's own, not in the stream's buffer, so that batching holds whatever the
    stream's buffering (`PYTHONUNBUFFERED=1`, common in containers, makes stdout write each call at once). They are
    written before a fork and when the process ends normally, in `multiprocessing` children too (granian's workers);
    only a process killed outright (SIGKILL, `os._exit`) loses the last `FLUSH_AFTER_SECONDS` of lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_pending_on: asyncio.AbstractEventLoop | None = None
        _LIVE_HANDLERS.add(self)
        _flush_before_fork_and_at_exit()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record), urgent=record.levelno >= logging.WARNING)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        """Write one rendered line (no newline); at once if `urgent`, else soon."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._pending.append(line)
            if urgent:
                self.flush()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            if self._flush_pending_on is not loop:  # none pending, or on a loop that has since ended
                self._flush_pending_on = loop
                loop.call_later(FLUSH_AFTER_SECONDS, self.flush_quietly)

    def flush_quietly(self) -> None:
        """`flush`, for callers that cannot handle an error: stdout closed or broken (the next line reports it)."""
        with contextlib.suppress(OSError, ValueError):
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_pending_on = None
            if self._pending:
                lines, self._pending = self._pending, []
                self.stream.write("\n".join(lines) + "\n")
            super().flush()


ACCESS_LINE_SAFE_FIELDS = frozenset({"event", "route", "status", "duration_ms"})
"""Access-line fields that the server sets itself (the route is a template of ours): no secret can be in them.
Every other field passes the Redactor, like any line."""
ACCESS_LINE_REPEATING_FIELDS = frozenset({"method", "user_id"})
"""Access-line fields whose values repeat from request to request (a few methods; the users of a service): the
redacted form of each text is remembered, a bounded number of them, rather than worked out again for every line.
(The request id is new on every line: remembering it would only push the others out.)"""
_encode = msgspec.json.Encoder(enc_hook=repr).encode


def render_json(line: Mapping[str, Any], **_: object) -> str:
    """A log line as compact JSON: msgspec's encoding (a value it cannot encode as its `repr`); when the line holds
    text outside ASCII (or a key msgspec refuses), `json.dumps`, which escapes what is not ASCII, so that a line has
    the same bytes whatever stdout's encoding. structlog's JSONRenderer takes it as its serializer, with json.dumps'
    keyword arguments, which it ignores."""
    try:
        text = _encode(line).decode()
    except (TypeError, msgspec.EncodeError):
        text = ""
    return text if text and text.isascii() else json.dumps(line, default=repr, separators=(",", ":"))


_second_text: tuple[int, str] = (-1, "")
"""The last second that `utc_timestamp` formatted, and its text (one tuple, replaced whole: threads may share it)."""


def utc_timestamp() -> str:
    """Now, as structlog's `TimeStamper(fmt="iso", utc=True)` writes it (`2026-01-02T03:04:05.123456Z`); the
    date and time of day are formatted once per second."""
    global _second_text
    second, microsecond = divmod(time.time_ns() // 1000, 1_000_000)
    known, text = _second_text
    if known != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_text = (second, text)
    return f"{text}.{microsecond:06d}Z"


class JsonAccessLog:
    """Writes the per-request access line straight to the JSON handler, as the structlog pipeline would render it
    (`timestamp`, `level`, `logger` added, fields outside `ACCESS_LINE_SAFE_FIELDS` redacted), without building a
    log record or running processors that have nothing to do for it."""

    def __init__(self, handler: LineHandler, *, logger: str, secrets: Iterable[str | None] = ()) -> None:
        self._handler = handler
        self._logger = logger
        self._redactor = Redactor(secrets)
        self._field = self._redactor.field
        self._repeating = lru_cache(maxsize=4096)(self._field)

    def __call__(self, line: dict[str, Any]) -> None:
        """Write the line of these fields (the dict becomes the line: the caller hands it over)."""
        for key, value in line.items():
            if key not in ACCESS_LINE_SAFE_FIELDS:
                repeats = value.__class__ is str and key in ACCESS_LINE_REPEATING_FIELDS
                line[key] = (self._repeating if repeats else self._field)(key, value)
        line["level"] = "info"
        line["logger"] = self._logger
        line["timestamp"] = utc_timestamp()
        self._handler.write_line(render_json(line))


def configure_logging(*, fmt: str = "json", level: str = "INFO", secrets: Iterable[str | None] = ()) -> LineHandler:
    """Route structlog and stdlib logging to stdout, as JSON lines or as readable console output.

    `fmt` is `json` or `console`; contextvars (request_id, job_id) are merged into every line, and every line
    passes the Redactor (with `secrets`, e.g. the JWT key, as known values to hide) just before rendering.
    """
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=render_json)
    structlog.configure(
        # filter_by_level first: a line below the level costs a level check, not the processors' work.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _job_duration,
            # Tracebacks become text before the Redactor sees them (also on the console: no secret in a frame).
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
    )
    # No line shows where it was logged from, nor the thread or process: the standard library need not look them up
    # for every record (its documented switches; the caller's frame is the costliest).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The arq CLI installs a plain-text handler of its own; one format per process is what operators parse.
    arq_logger = logging.getLogger("arq")
    arq_logger.handlers.clear()
    arq_logger.propagate = True
    for noisy in ("asyncio", "aiosqlite", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return handler
