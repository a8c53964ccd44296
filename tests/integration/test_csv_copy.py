"""A big CSV report through PostgreSQL's COPY: the bytes that the row path writes (the CSV encoder over the rows), for
every type that COPY is used for and the values where the two could differ; the query run once; and the row path's
safeguards kept (time limit, errors, cancellation, progress)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import ReportQueryFailed, ReportTimedOut
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.job_admission import UnitOfWorkAdmission
from application.job_ledger import UnitOfWorkJobLedger
from application.ports import RenderContext
from application.run_report_job import RunPolicy, RunReportJob
from domain.jobs import ErrorCode, JobStatus
from domain.reports import Binding, ParameterType, ReportConfiguration, ReportParameter
from infrastructure.artifacts import FileSystemArtifactStore
from infrastructure.encoders import CsvEncoder
from infrastructure.persistence.csv_copy import COPY_COLUMNS, COPY_MIN_ROWS, CsvRows
from infrastructure.persistence.data_source import PostgresRowStream, SqlReportDataSource
from infrastructure.persistence.engine import create_engine
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork

pytestmark = pytest.mark.integration

EDGE_ROWS = [
    # int2, int4, int8, uuid, text, varchar, bool, numeric, date, timestamp, timestamptz
    ("0", "0", "0", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'plain'", "'v'", "true", "0", "'2024-01-01'",
     "'2024-01-02 03:04:05'", "'2024-01-02 03:04:05+02'"),
    ("'-32768'", "'-2147483648'", "'-9223372036854775808'", "NULL", "''", "''", "false", "0.00", "'0001-01-01'",
     "'0001-01-01 00:00:00'", "'0001-01-01 00:00:00+00'"),
    ("32767", "2147483647", "9223372036854775807", "NULL", "NULL", "NULL", "NULL", "'-0.000'", "'9999-12-31'",
     "'9999-12-31 23:59:59.999999'", "'9999-12-31 23:59:59.999999+00'"),
    ("NULL", "NULL", "NULL", "NULL", "'a,b'", "'say \"hi\"'", "true", "1e-30", "'1899-12-31'",
     "'1899-12-31 23:59:59.5'", "'1899-12-31 23:59:59.000001-05'"),
    ("1", "1", "1", "NULL", "E'two\\nlines, \"quoted\"\\n'", "E'cr\\rlf\\r\\n'", "false", "1e30", "NULL", "NULL",
     "NULL"),
    ("2", "2", "2", "'00000000-0000-0000-0000-000000000000'", "' leading space'", "'trailing '", "true",
     "123456789012345678901234567890.123456789012345678901234567890", "'0044-03-15'", "'infinity'", "'infinity'"),
    ("3", "3", "3", "NULL", "'\\.'", "'\\.'", "false", "'NaN'", "'infinity'", "'-infinity'", "'-infinity'"),
    ("4", "4", "4", "NULL", "'ünïcödé 漢字 עברית 😀'", "'=1+2'", "NULL", "'Infinity'", "'-infinity'",
     "'2024-06-15 12:00:00.120000'", "'2024-06-15 12:00:00.12+00'"),
    ("5", "5", "5", "NULL", "'NaN'", "'t'", "true", "'-Infinity'", "'2024-12-31'", "'1970-01-01'", "'1970-01-01+14'"),
    ("6", "6", "6", "NULL", "'\"\"'", "','", "true", "1.50", "'2024-06-15'", "'2024-02-29 00:00:00.000100'",
     "'2024-02-29 23:59:59-12'"),
]  # fmt: skip
TYPES = ("int2", "int4", "int8", "uuid", "text", "varchar", "bool", "numeric", "date", "timestamp", "timestamptz")
COLUMNS = ("s", "i", "b", "u", "t", "v", "f", "n", "d", "ts", "tz")


def values_query(rows: Sequence[tuple[str, ...]]) -> str:
    typed = [", ".join(f"{value}::{kind}" for value, kind in zip(row, TYPES, strict=True)) for row in rows]
    return f"SELECT * FROM (VALUES ({'), ('.join(typed)})) AS v({', '.join(COLUMNS)})"


EDGES = values_query(EDGE_ROWS)
# Over 64 KiB of output, with a quoted field holding line breaks every 700 rows: chunks that end inside quotes.
MANY_ROWS = (
    "SELECT g AS id, CASE WHEN g % 700 = 0 THEN E'quote \"\\n' || g || E'\\r\\n' ELSE md5(g::text) END AS label,"
    " round((g * 0.37)::numeric, 2) AS amount, DATE '1899-01-01' + (g % 366)::int AS day, (g % 3 = 0) AS flag,"
    " TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1.5 second' AS at"
    " FROM generate_series(1, 20000) AS g"
)
# Types that COPY is not used for: the report takes the row path, and writes what it always did.
OTHER_TYPES = (
    "SELECT g AS n, g * 0.5::float8 AS half, 'NaN'::float8 AS nan, '-Infinity'::float4 AS inf, ARRAY[g, NULL] AS arr,"
    " '\\xdeadbeef'::bytea AS bin, '{\"a\": [1, 2.5]}'::jsonb AS doc, INTERVAL '1 day 2 hours' AS span,"
    " TIME '12:00:01.5' AS at FROM generate_series(1, 20000) AS g"
)
BIG = "SELECT g AS id, md5(g::text) AS label FROM generate_series(1, 100000) AS g"


async def produce(engine: AsyncEngine, query: str, *bindings: Binding, **options: Any) -> tuple[bytes, bool, int]:
    """The report's CSV as the worker writes it, whether COPY wrote it, and the rows counted on the way."""
    encoder = CsvEncoder(options.pop("context", None))
    chunks: list[bytes] = []
    counted = 0

    async def write(data: bytes, rows: int) -> None:
        nonlocal counted
        chunks.append(data)
        counted += rows

    limit_seconds = options.pop("limit_seconds", 10)
    source = SqlReportDataSource(engine, batch_size=100, **options)
    async with source.run(query, bindings, limit_seconds) as rows:
        assert isinstance(rows, PostgresRowStream)
        chunks.append(encoder.begin(rows.columns))
        await rows.encode(encoder, write)
    return b"".join(chunks), rows.copied, counted


async def row_path(engine: AsyncEngine, query: str, *bindings: Binding) -> bytes:
    data, copied, _ = await produce(engine, query, *bindings)
    assert not copied
    return data


async def copied(engine: AsyncEngine, query: str, *bindings: Binding, min_rows: int = 0) -> tuple[bytes, int]:
    data, was_copied, counted = await produce(engine, query, *bindings, copy_csv=True, copy_min_rows=min_rows)
    assert was_copied
    return data, counted


async def test_the_edge_values_cover_every_type_that_copy_is_used_for(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        statement = await raw.driver_connection.prepare(EDGES)  # type: ignore[union-attr]
        oids = {attribute.type.oid for attribute in statement.get_attributes()}

    assert oids == set(COPY_COLUMNS)


@pytest.mark.parametrize(("query", "rows"), [(EDGES, len(EDGE_ROWS)), (MANY_ROWS, 20000)], ids=["edges", "many-chunks"])
async def test_copy_writes_the_bytes_that_the_row_path_writes(pg_engine: AsyncEngine, query: str, rows: int) -> None:
    expected = await row_path(pg_engine, query)

    data, counted = await copied(pg_engine, query)

    assert data.decode().splitlines(keepends=True) == expected.decode().splitlines(keepends=True)
    assert data == expected
    assert counted == rows


async def test_copy_binds_parameters_as_the_cursor_does(pg_engine: AsyncEngine) -> None:
    query = (
        "SELECT g, :label AS label, g < :last AS early, :day AS day, round((:ratio * g)::numeric, 2) AS ratio,"
        " :flag AS flag, :none AS none"
        " FROM generate_series(1, :last) AS g WHERE g - :minus > 0"
    )
    bindings = (
        Binding("last", ParameterType.INTEGER, 5),
        Binding("label", ParameterType.STRING, "it's; -- \\' ok"),
        Binding("day", ParameterType.DATE, "1899-12-31"),
        Binding("ratio", ParameterType.NUMBER, 0.1),
        Binding("flag", ParameterType.BOOLEAN, True),
        Binding("none", ParameterType.STRING, None),
        Binding("minus", ParameterType.INTEGER, -1),
    )

    data, _ = await copied(pg_engine, query, *bindings)

    assert data.decode().splitlines() == (await row_path(pg_engine, query, *bindings)).decode().splitlines()
    assert data.decode().splitlines()[1] == "1,it's; -- \\' ok,true,1899-12-31,0.10,true,"


async def test_a_report_of_types_that_copy_writes_otherwise_takes_the_row_path(pg_engine: AsyncEngine) -> None:
    data, was_copied, counted = await produce(pg_engine, OTHER_TYPES, copy_csv=True, copy_min_rows=0)

    assert not was_copied
    assert counted == 20000
    assert data.startswith(b'n,half,nan,inf,arr,bin,doc,span,at\r\n1,0.5,,,"[1,null]",3q2+7w==,"{""a"":[1,2.5]}"')


@pytest.mark.parametrize(
    ("query", "context"),
    [
        ("SELECT g AS only_column FROM generate_series(1, 20000) AS g", None),
        ("SELECT g AS id, '$1' AS dollars FROM generate_series(1, 20000) AS g", None),
        (
            BIG,
            RenderContext(title="r", parameters={}, generated_at=datetime.now(UTC), csv_formula_escape=True),
        ),
        ("SELECT g AS id, md5(g::text) AS label FROM generate_series(1, 4999) AS g", None),
    ],
    ids=["one-column", "dollar-sign", "formula-escape", "small"],
)
async def test_small_or_formula_escaped_reports_take_the_row_path(
    pg_engine: AsyncEngine, query: str, context: RenderContext | None
) -> None:
    assert COPY_MIN_ROWS == 5000

    _, was_copied, counted = await produce(pg_engine, query, copy_csv=True, context=context)

    assert not was_copied
    assert counted == int(query.split("generate_series(1, ")[1].split(")")[0])


async def test_a_big_report_is_copied_by_default(pg_engine: AsyncEngine) -> None:
    data, was_copied, counted = await produce(pg_engine, BIG, copy_csv=True)

    assert was_copied
    assert counted == 100000
    assert data == await row_path(pg_engine, BIG)


@pytest.fixture
async def noticed(pg_url: str) -> AsyncIterator[tuple[AsyncEngine, list[str]]]:
    """An engine whose connections record the notices PostgreSQL sends them, and a function that sends one each
    time it is called."""
    engine = create_engine(pg_url)
    heard: list[str] = []

    def listen(dbapi_connection: Any, _: object) -> None:
        dbapi_connection.driver_connection.add_log_listener(lambda _conn, message: heard.append(message.message))

    event.listen(engine.sync_engine, "connect", listen)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION report_ran() RETURNS int VOLATILE LANGUAGE plpgsql"
            " AS 'BEGIN RAISE NOTICE ''report query ran''; RETURN 1; END'"
        )
    yield engine, heard
    await engine.dispose()


@pytest.mark.parametrize("copy_min_rows", [0, 10**9], ids=["copy", "row-path"])
async def test_the_query_runs_once(noticed: tuple[AsyncEngine, list[str]], copy_min_rows: int) -> None:
    engine, heard = noticed
    query = "SELECT g AS id, once.ran FROM generate_series(1, 20000) AS g, (SELECT report_ran() AS ran) AS once"

    data, was_copied, counted = await produce(engine, query, copy_csv=True, copy_min_rows=copy_min_rows)
    await asyncio.sleep(0.05)  # notices are handed to listeners by the event loop

    assert was_copied is (copy_min_rows == 0)
    assert (counted, data.count(b",1\r\n")) == (20000, 20000)
    assert heard.count("report query ran") == 1


async def test_copy_keeps_the_time_limit(pg_engine: AsyncEngine) -> None:
    endless = "SELECT g, g AS h FROM generate_series(1, 1000000000) AS g"
    started = asyncio.get_running_loop().time()

    with pytest.raises(ReportTimedOut):
        await produce(pg_engine, endless, copy_csv=True, limit_seconds=0.5)
    assert asyncio.get_running_loop().time() - started < 5


async def test_copy_reports_an_error_of_a_later_row(pg_engine: AsyncEngine) -> None:
    failing = "SELECT g, 1 / (50000 - g) AS x FROM generate_series(1, 100000) AS g"

    with pytest.raises(ReportQueryFailed, match="SQLSTATE 22012"):
        await produce(pg_engine, failing, copy_csv=True)
    _, was_copied, _ = await produce(pg_engine, BIG, copy_csv=True)  # the pool still serves
    assert was_copied


def test_rows_are_counted_at_line_ends_outside_quotes_across_chunks() -> None:
    rows = CsvRows()
    chunks = [b'1,"a\n', b'b""\n",x\n2,', b'"\n"\n3,y\n', b"4,z\n"]

    converted = [rows.convert(chunk) for chunk in chunks]

    assert b"".join(data for data, _ in converted) == b'1,"a\nb""\n",x\r\n2,"\n"\r\n3,y\r\n4,z\r\n'
    assert [count for _, count in converted] == [0, 1, 2, 1]


# The job: progress while COPY streams, the error codes, cancellation.


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


def uow_of(db: FakeDatabase) -> Callable[[], FakeUnitOfWork]:
    return lambda: FakeUnitOfWork(db)


async def a_job(db: FakeDatabase, query: str, parameters: dict[str, object] | None = None) -> UUID:
    declared = tuple(ReportParameter(name, ParameterType.INTEGER) for name in parameters or {})
    report = ReportConfiguration(id=uuid4(), name="Big", query=query, parameters=declared, formats=("csv",))
    db.reports[report.id] = report
    initiate = InitiateAsynchronousReportJob(uow_of(db), UnitOfWorkAdmission(uow_of(db)), FakeJobQueue(db), FakeClock())
    request = InitiateReportJob(report_id=report.id, user_id="alice", parameters=parameters or {}, format="csv")
    return (await initiate.execute(request)).job_id


def a_runner(engine: AsyncEngine, db: FakeDatabase, root: Path, timeout_seconds: float = 30) -> RunReportJob:
    policy = RunPolicy(timeout_seconds=timeout_seconds, heartbeat_seconds=0.05, max_attempts=1)
    source = SqlReportDataSource(engine, copy_csv=True)
    store = FileSystemArtifactStore(root)
    ledger = UnitOfWorkJobLedger(uow_of(db))
    return RunReportJob(ledger, source, store, {"csv": CsvEncoder}, FakeJobQueue(db), FakeClock(), policy)


# Some 0.2 ms a row: each row's label is 200 hashes.
SLOW_BIG = (
    "SELECT g AS id, (SELECT string_agg(md5(g::text || k), '') FROM generate_series(1, 200) AS k) AS label"
    " FROM generate_series(1, :rows) AS g"
)
SLOW_BIG_WITH_FLOATS = SLOW_BIG.replace("AS id,", "AS id, g * 0.5::float8 AS half,")  # the row path's


async def test_progress_is_reported_while_copy_streams(
    pg_engine: AsyncEngine, db: FakeDatabase, tmp_path: Path
) -> None:
    job_id = await a_job(db, SLOW_BIG, {"rows": 8000})
    seen: list[int] = []

    async def watch() -> None:
        while db.jobs[job_id].status in (JobStatus.QUEUED, JobStatus.RUNNING):
            seen.append(db.jobs[job_id].progress)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    await a_runner(pg_engine, db, tmp_path).execute(job_id)
    await watcher

    job = db.jobs[job_id]
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len({p for p in seen if 5 < p < 100}) >= 3, f"progress saved mid-way: {sorted(set(seen))}"
    assert seen == sorted(seen)
    assert job.artifact is not None
    assert (tmp_path / job.artifact.key).read_bytes().count(b"\r\n") == 8001


async def test_a_statement_timeout_during_copy_fails_the_job_as_on_the_row_path(
    pg_engine: AsyncEngine, db: FakeDatabase, tmp_path: Path
) -> None:
    copied_job = await a_job(db, SLOW_BIG, {"rows": 1_000_000})
    row_job = await a_job(db, SLOW_BIG_WITH_FLOATS, {"rows": 1_000_000})

    for job_id in (copied_job, row_job):
        await a_runner(pg_engine, db, tmp_path, timeout_seconds=0.5).execute(job_id)

    errors = [db.jobs[job_id].error for job_id in (copied_job, row_job)]
    assert [(e.code if e else None) for e in errors] == [ErrorCode.REPORT_TIMEOUT, ErrorCode.REPORT_TIMEOUT]
    assert not await asyncio.to_thread(published, tmp_path), "nothing published"


async def test_a_cancelled_job_stops_the_copy(pg_engine: AsyncEngine, db: FakeDatabase, tmp_path: Path) -> None:
    job_id = await a_job(db, SLOW_BIG, {"rows": 1_000_000})
    running = asyncio.create_task(a_runner(pg_engine, db, tmp_path).execute(job_id))
    while db.jobs[job_id].progress <= 5:  # noqa: ASYNC110 - the fake database has no event to wait on
        await asyncio.sleep(0.02)

    assert await copies_running(pg_engine) == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    for _ in range(100):
        if await copies_running(pg_engine) == 0:
            break
        await asyncio.sleep(0.05)
    assert await copies_running(pg_engine) == 0
    assert db.jobs[job_id].status is JobStatus.QUEUED  # handed back, as on the row path
    assert not await asyncio.to_thread(published, tmp_path)


def published(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


async def copies_running(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%' AND state = 'active'"
            " AND pid <> pg_backend_pid()"
        )
        return int(result.scalar_one())
