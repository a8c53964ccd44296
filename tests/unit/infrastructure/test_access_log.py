"""The access line written straight to the JSON handler: every field, redaction, and when lines are flushed."""

import asyncio
import io
import json
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from api.middleware import ACCESS_LOGGER
from infrastructure.logs import (
    ACCESS_LINE_SAFE_FIELDS,
    FLUSH_AFTER_SECONDS,
    REDACTED,
    JsonAccessLog,
    LineHandler,
    Redactor,
    configure_logging,
    render_json,
    utc_timestamp,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SECRET = "the-jwt-secret-of-this-service-0123456789"
FIELDS = ("event", "method", "route", "status", "duration_ms", "request_id", "user_id")


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.fixture
def json_logs() -> Iterator[tuple[LineHandler, CountingStream]]:
    """JSON logging at INFO for the test (restored after it), written to a stream that counts its flushes."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = configure_logging(fmt="json", level="INFO", secrets=[SECRET, None])
    stream = CountingStream()
    handler.setStream(stream)
    try:
        yield handler, stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def access_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": "http_request",
        "method": "GET",
        "route": "/api/v1/jobs/{jobId}",
        "status": 200,
        "duration_ms": 1.25,
        "request_id": "req-7",
        "user_id": "alice",
    }
    return fields | changes


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_access_line_has_every_field_of_the_pipelines_line(json_logs: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = json_logs
    JsonAccessLog(handler, logger=ACCESS_LOGGER, secrets=[SECRET])(access_fields())
    # The same fields through structlog's processors and the Redactor, as structlog_access_log logs them (on a
    # logger of its own: the middleware's would stay cached with this configuration, out of capture_logs' reach).
    structlog.get_logger(ACCESS_LOGGER).info(**access_fields())

    direct, pipeline = lines_of(stream)
    assert set(direct) == {*FIELDS, "timestamp", "level", "logger"}
    assert {k: v for k, v in direct.items() if k != "timestamp"} == {
        k: v for k, v in pipeline.items() if k != "timestamp"
    }
    assert (direct["level"], direct["logger"], direct["status"], direct["user_id"]) == (
        "info",
        "api.middleware",
        200,
        "alice",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", direct["timestamp"])
    # isoformat() leaves out a fraction of .000000; the direct line always writes it
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", pipeline["timestamp"])
    assert abs(_seconds(direct["timestamp"]) - _seconds(pipeline["timestamp"])) < 1


@pytest.mark.parametrize(
    ("nanoseconds", "expected"),
    [
        (1_767_323_045_123_456_789, "2026-01-02T03:04:05.123456Z"),
        (1_767_323_045_000_000_999, "2026-01-02T03:04:05.000000Z"),
        (1_767_323_045_999_999_999, "2026-01-02T03:04:05.999999Z"),
        (1_767_323_046_000_001_000, "2026-01-02T03:04:06.000001Z"),
    ],
)
def test_the_access_lines_timestamp_is_utc_to_the_microsecond_truncated(
    monkeypatch: pytest.MonkeyPatch, nanoseconds: int, expected: str
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)

    assert utc_timestamp() == expected


def test_caller_controlled_fields_of_the_access_line_are_redacted(
    json_logs: tuple[LineHandler, CountingStream],
) -> None:
    handler, stream = json_logs
    write = JsonAccessLog(handler, logger=ACCESS_LOGGER, secrets=[SECRET])
    write(access_fields(request_id=JWT, user_id=f"svc-{SECRET}", method="Bearer opaque-value"))
    write(access_fields(user_id=None, token="opaque-token"))  # a field added later: redacted by its name

    first, second = lines_of(stream)
    assert (first["request_id"], first["user_id"]) == (REDACTED, f"svc-{REDACTED}")
    assert first["method"] == f"Bearer {REDACTED}"
    assert (second["token"], second["user_id"], second["route"]) == (REDACTED, None, "/api/v1/jobs/{jobId}")
    for leaked in (JWT, SECRET, "opaque-value", "opaque-token"):
        assert leaked not in stream.getvalue()


def test_remembered_redactions_of_repeating_fields_stay_redacted_line_after_line(
    json_logs: tuple[LineHandler, CountingStream],
) -> None:
    handler, stream = json_logs
    write = JsonAccessLog(handler, logger=ACCESS_LOGGER, secrets=[SECRET])
    for _ in range(3):
        write(access_fields(user_id=f"svc-{SECRET}", method="Bearer opaque-value", request_id=JWT))
        write(access_fields(user_id="alice"))

    lines = lines_of(stream)
    assert [line["user_id"] for line in lines] == [f"svc-{REDACTED}", "alice"] * 3
    assert [line["method"] for line in lines[::2]] == [f"Bearer {REDACTED}"] * 3
    assert [line["request_id"] for line in lines[::2]] == [REDACTED] * 3
    assert "opaque-value" not in stream.getvalue()


def test_fields_left_unredacted_are_set_by_the_server_and_not_named_like_secrets() -> None:
    assert {"event", "route", "status", "duration_ms"} == ACCESS_LINE_SAFE_FIELDS
    assert all(Redactor().field(name, "value") == "value" for name in ACCESS_LINE_SAFE_FIELDS)


def test_text_outside_ascii_is_escaped_as_the_pipeline_does(json_logs: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = json_logs
    JsonAccessLog(handler, logger=ACCESS_LOGGER)(access_fields(user_id="zoë"))

    assert '"user_id":"zo\\u00eb"' in stream.getvalue()
    assert lines_of(stream)[0]["user_id"] == "zoë"


async def test_lines_on_an_event_loop_are_flushed_together_soon_after(
    json_logs: tuple[LineHandler, CountingStream],
) -> None:
    handler, stream = json_logs
    write = JsonAccessLog(handler, logger=ACCESS_LOGGER)
    flushes = stream.flushes
    write(access_fields())
    write(access_fields())

    assert lines_of(stream) == []  # waiting: not written line by line, whatever the stream's buffering
    assert stream.flushes == flushes
    await asyncio.sleep(FLUSH_AFTER_SECONDS * 3)
    assert len(lines_of(stream)) == 2
    assert stream.writes == 1  # both lines in one write
    assert stream.flushes == flushes + 1


async def test_a_warning_flushes_at_once_and_with_it_the_lines_before(
    json_logs: tuple[LineHandler, CountingStream],
) -> None:
    _, stream = json_logs
    flushes = stream.flushes
    logging.getLogger("reportgen.test").info("queued")
    logging.getLogger("reportgen.test").warning("degraded")

    assert stream.flushes == flushes + 1
    assert [line["event"] for line in lines_of(stream)] == ["queued", "degraded"]


def test_a_line_logged_off_an_event_loop_is_flushed_at_once(json_logs: tuple[LineHandler, CountingStream]) -> None:
    _, stream = json_logs
    flushes = stream.flushes
    logging.getLogger("reportgen.test").info("from a thread or a script")

    assert stream.flushes == flushes + 1


async def test_a_flush_pending_on_an_ended_loop_does_not_hold_back_later_lines(
    json_logs: tuple[LineHandler, CountingStream],
) -> None:
    handler, stream = json_logs

    def on_another_loop(write: Callable[[], None]) -> None:
        async def log_once() -> None:
            write()

        asyncio.run(log_once())  # ends before its flush is due

    await asyncio.to_thread(on_another_loop, lambda: handler.write_line("{}"))
    flushes = stream.flushes
    handler.write_line("{}")
    await asyncio.sleep(FLUSH_AFTER_SECONDS * 3)

    assert stream.flushes == flushes + 1


def _log_on_a_loop_and_exit(path: str) -> None:
    handler = configure_logging(fmt="json", level="INFO")
    handler.setStream(open(path, "w"))  # noqa: SIM115 - written by the handler until the process ends

    async def log_once() -> None:
        logging.getLogger("reportgen.test").info("the last line")

    asyncio.run(log_once())  # the process ends before the flush on that loop is due


def test_a_child_process_writes_its_waiting_lines_when_it_ends(
    json_logs: tuple[LineHandler, CountingStream], tmp_path: Path
) -> None:
    """As granian's workers are: forked by `multiprocessing` from a parent that configured logging first."""
    path = tmp_path / "child.log"
    child = multiprocessing.get_context("fork").Process(target=_log_on_a_loop_and_exit, args=(str(path),))
    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert [line["event"] for line in lines_of(io.StringIO(path.read_text()))] == ["the last line"]


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (
            {"event": "job started", "attempt": 1, "ok": True, "gone": None},
            '{"event":"job started","attempt":1,"ok":true,"gone":null}',
        ),
        ({"event": "zoë", "n": 1.5}, '{"event":"zo\\u00eb","n":1.5}'),
        ({"event": "a thing", "thing": _Opaque()}, '{"event":"a thing","thing":"<opaque>"}'),
        ({1: "an int key", "event": "x"}, '{"1":"an int key","event":"x"}'),
    ],
)
def test_a_line_is_compact_json_with_only_ascii_in_it(line: dict[Any, Any], text: str) -> None:
    rendered = render_json(line)
    assert rendered == text
    assert rendered.isascii()
    assert json.loads(rendered).keys() == {str(key) for key in line}
