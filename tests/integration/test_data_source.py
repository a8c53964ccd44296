"""The report data source on PostgreSQL and SQLite: streaming, typed bindings, read-only, timeouts, errors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import ReportQueryFailed, ReportTimedOut, StorageUnavailable
from application.ports import Row
from domain.reports import Binding, ParameterType
from infrastructure.persistence.data_source import (
    FOREIGN_PREPARED_STATEMENTS,
    UNREADABLE_VALUE,
    SqlReportDataSource,
    bind_parameters,
)
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.query_guards import WRITE_ATTEMPT
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import a_report, logged_statements, store
from tests.integration.round_trips import RoundTripCounter

pytestmark = pytest.mark.integration

NUMBERS = (
    "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :last)\n"
    "SELECT n, n * 2 AS doubled FROM numbers"
)
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
POSTGRES_TYPES = (
    "SELECT 1::int2 AS a, 2::int8 AS b, 1.5::float4 AS c, 12.340::numeric AS d, 'NaN'::numeric AS e, 'x'::text AS f,"
    " 'z'::char(3) AS g, DATE '2024-01-02' AS h, TIMESTAMP '2024-01-02 03:04:05.6' AS i,"
    " TIMESTAMPTZ '2024-01-02 03:04:05+02' AS j, TIME '01:02:03' AS k, INTERVAL '1 day 2 hours' AS l,"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS m, true AS n, '{\"a\": [1, 2]}'::json AS o,"
    " '{\"b\": 1.5}'::jsonb AS p, ARRAY[1, NULL] AS q, '\\x0102'::bytea AS r, 12.5::money AS s,"
    " '10.0.0.1'::inet AS t, NULL AS u, '100%' AS v, '12:30' AS w, :x AS n"
)


async def run(
    engine: AsyncEngine, query: str, *bindings: Binding, limit_seconds: float = 10, batch_size: int = 1000
) -> tuple[Sequence[str], int | None, list[Sequence[Row]]]:
    source = SqlReportDataSource(engine, batch_size=batch_size)
    async with source.run(query, bindings, limit_seconds) as rows:
        batches = [batch async for batch in rows.batches()]
        return rows.columns, rows.estimated_rows, batches  # the estimate is known once the first rows are read


async def stream(
    received: list[int], engine: AsyncEngine, query: str, *bindings: Binding, limit_seconds: float, pause: float = 0
) -> None:
    """Consume a query's batches like a slow or fast writer would, recording each batch's size as it comes."""
    async with SqlReportDataSource(engine, batch_size=100).run(query, bindings, limit_seconds) as rows:
        async for batch in rows.batches():
            received.append(len(batch))
            await asyncio.sleep(pause)


async def report_names(engine: AsyncEngine) -> list[str]:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        return [r.name for r in await uow.reports.list()]


async def test_streams_a_large_result_in_batches(engine: AsyncEngine) -> None:
    columns, estimated, batches = await run(engine, NUMBERS, Binding("last", ParameterType.INTEGER, 2500))

    assert list(columns) == ["n", "doubled"]
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [tuple(r) for r in batches[2][-2:]] == [(2499, 4998), (2500, 5000)]
    assert isinstance(estimated, int)


async def test_postgresql_rows_hold_the_values_that_sqlalchemy_returns(pg_engine: AsyncEngine) -> None:
    x = Binding("x", ParameterType.BOOLEAN, False)
    async with pg_engine.connect() as conn:
        expected = await conn.execute(sa.text(POSTGRES_TYPES).bindparams(*bind_parameters([x])))
        expected_columns, [expected_row] = list(expected.keys()), [tuple(row) for row in expected]

    columns, _, [[row]] = await run(pg_engine, POSTGRES_TYPES, x)

    assert list(columns) == expected_columns
    assert [type(value) for value in row] == [type(value) for value in expected_row]
    assert [str(value) for value in row] == [str(value) for value in expected_row]  # str: NaN is not NaN


async def stop_early(engine: AsyncEngine, query: str, bindings: Sequence[Binding], stop: str) -> None:
    """Take the first batch of a query, then stop (`break`, an `error`, or `cancel` from outside) while the next
    batch is being fetched."""
    taken = asyncio.Event()

    async def consume() -> None:
        async with SqlReportDataSource(engine, batch_size=10).run(query, bindings, 30) as rows:
            async for _batch in rows.batches():
                taken.set()
                if stop == "error":
                    raise LookupError
                if stop == "cancel":
                    await asyncio.sleep(30)
                break

    task = asyncio.create_task(consume())
    await taken.wait()
    if stop == "cancel":
        task.cancel()
    with contextlib.suppress(LookupError, asyncio.CancelledError):
        await task


async def assert_connection_clean(engine: AsyncEngine) -> None:
    """The engine's one pooled connection runs report queries and writes again."""
    _, _, batches = await run(engine, NUMBERS, Binding("last", ParameterType.INTEGER, 3))
    await store(engine, a_report("Written afterwards"))

    assert [tuple(row) for batch in batches for row in batch] == [(1, 2), (2, 4), (3, 6)]
    assert "Written afterwards" in await report_names(engine)


@pytest.mark.parametrize("stop", ["break", "error", "cancel"])
async def test_a_consumer_that_stops_early_leaves_the_connection_clean(database_url: str, stop: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)  # the next query gets the same connection
    try:
        await stop_early(engine, NUMBERS, [Binding("last", ParameterType.INTEGER, 100_000)], stop)
        await assert_connection_clean(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("stop", ["break", "cancel"])
async def test_a_postgresql_fetch_still_running_when_the_consumer_stops_is_cancelled(pg_url: str, stop: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    slow = "SELECT n FROM generate_series(1, 1000) AS n WHERE pg_sleep(0.02) IS NOT NULL"  # 0.2 s per batch
    try:
        started = time.monotonic()
        await stop_early(engine, slow, [], stop)
        await assert_connection_clean(engine)

        assert time.monotonic() - started < 10  # not the 20 s that the whole query takes
    finally:
        await engine.dispose()


async def test_postgresql_estimates_rows_from_the_plan(pg_engine: AsyncEngine) -> None:
    _, estimated, _ = await run(pg_engine, SERIES, Binding("last", ParameterType.INTEGER, 2500))

    assert estimated == 2500


SERIES = "SELECT n FROM generate_series(1, :last) AS n"


async def test_a_small_postgresql_report_is_one_message_for_its_transaction_and_asks_for_no_plan(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)  # one connection: the one the logger watches
    try:
        sent = await logged_statements(engine)

        small = await run(engine, SERIES, Binding("last", ParameterType.INTEGER, 3), batch_size=10)
        await asyncio.sleep(0.01)  # asyncpg calls query loggers soon after, not during, the query
        small_sent = sent[:]
        big = await run(engine, SERIES, Binding("last", ParameterType.INTEGER, 25), batch_size=10)
        await asyncio.sleep(0.01)
    finally:
        await engine.dispose()

    # A cursor's own messages are not logged: what is logged is every statement besides the report's query. The
    # transaction ends with one message: the reset of what a report could leave on the session, and last the look
    # for prepared statements that a reset cannot drop.
    assert [statement.split(";")[0] for statement in small_sent] == ["BEGIN READ ONLY", "ROLLBACK"]
    assert small_sent[1].endswith(FOREIGN_PREPARED_STATEMENTS)
    assert small[1] == 3  # a first short batch is the exact count
    assert [statement.split()[0] for statement in sent[len(small_sent) :]] == [
        "BEGIN",
        "EXPLAIN",
        "ROLLBACK;",
    ]
    assert big[1] == 25


async def test_a_small_postgresql_report_costs_three_round_trips(pg_url: str) -> None:
    with RoundTripCounter(pg_url) as counter:
        engine = create_engine(counter.url, pool_size=1, max_overflow=0)
        try:
            await run(engine, SERIES, Binding("last", ParameterType.INTEGER, 3))  # connects; the query is described
            before = counter.round_trips
            small = await run(engine, SERIES, Binding("last", ParameterType.INTEGER, 3), batch_size=10)
            small_trips = counter.round_trips - before
            before = counter.round_trips
            big = await run(engine, SERIES, Binding("last", ParameterType.INTEGER, 25), batch_size=10)
            big_trips = counter.round_trips - before
        finally:
            await engine.dispose()

    # The transaction with its time limit; the cursor opened with its first rows; the end of the session.
    assert (small_trips, [len(batch) for batch in small[2]]) == (3, [3])
    # And for 25 rows in batches of 10: the plan's estimate once the first batch is full, two more fetches (the
    # third batch is short: the last).
    assert (big_trips, [len(batch) for batch in big[2]]) == (6, [10, 10, 5])


async def test_a_report_query_is_parsed_once_per_connection(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    prepared = (
        "SELECT name, prepare_time FROM pg_prepared_statements"
        " WHERE statement LIKE '%generate_series%' AND statement NOT LIKE '%pg_prepared_statements%'"
    )
    try:
        seen = []
        for last in (3, 4, 2500):
            await run(engine, SERIES, Binding("last", ParameterType.INTEGER, last), batch_size=1000)
            async with engine.connect() as conn:  # the same connection: the pool holds one
                seen.append(set((await conn.exec_driver_sql(prepared)).all()))
    finally:
        await engine.dispose()

    assert len(seen[0]) == 1  # the report's query, prepared once
    assert seen[1] == seen[0]  # and not again: asyncpg's statement cache holds it
    assert len(seen[2]) == 2  # the plan of a big report is a statement of its own


async def test_columns_of_a_query_without_rows(engine: AsyncEngine) -> None:
    columns, estimated, batches = await run(engine, "SELECT 1 AS a, 2 AS a, 'x' AS b WHERE 1 = 0")

    assert (list(columns), estimated, batches) == (["a", "a", "b"], 0, [])


async def test_sqlite_counts_rows_for_the_estimate(sqlite_engine: AsyncEngine) -> None:
    _, estimated, _ = await run(sqlite_engine, NUMBERS + ";\n", Binding("last", ParameterType.INTEGER, 1234))

    assert estimated == 1234


async def test_binds_typed_values_and_null_optional_ones(engine: AsyncEngine) -> None:
    query = (
        "WITH t(region, amount) AS (VALUES ('EU', 1), ('US', 2), ('APAC', 3))\n"
        "SELECT region, amount * :ratio AS scaled, :since AS since FROM t\n"
        "WHERE (:region IS NULL OR region = :region) AND (:flag IS NULL OR :flag)\n"
        "AND amount <= :top AND :since <= '2026-01-02' ORDER BY amount"
    )
    bindings = [
        Binding("ratio", ParameterType.NUMBER, 2),
        Binding("since", ParameterType.DATE, "2026-01-01"),
        Binding("flag", ParameterType.BOOLEAN, True),
        Binding("top", ParameterType.INTEGER, 2),
    ]

    _, _, every_region = await run(engine, query, Binding("region", ParameterType.STRING, None), *bindings)
    _, _, only_us = await run(engine, query, Binding("region", ParameterType.STRING, "US"), *bindings)

    assert [(r[0], r[1], str(r[2])) for r in every_region[0]] == [
        ("EU", 2.0, "2026-01-01"),
        ("US", 4.0, "2026-01-01"),
    ]
    assert [r[0] for r in only_us[0]] == ["US"]


@pytest.mark.parametrize("query", ["DELETE FROM reports", "UPDATE reports SET name = 'changed'"])
async def test_a_write_attempt_fails_and_changes_nothing(engine: AsyncEngine, query: str) -> None:
    await store(engine, a_report("Kept"))

    with pytest.raises(ReportQueryFailed) as caught:
        await run(engine, query)

    assert caught.value.message == WRITE_ATTEMPT
    assert await report_names(engine) == ["Kept"]


async def test_a_write_hidden_in_a_select_fails_on_postgresql(pg_engine: AsyncEngine) -> None:
    await store(pg_engine, a_report("Kept"))

    with pytest.raises(ReportQueryFailed, match="read-only"):
        await run(pg_engine, "WITH gone AS (DELETE FROM reports RETURNING id) SELECT count(*) FROM gone")

    assert await report_names(pg_engine) == ["Kept"]


async def test_the_connection_is_writable_again_after_a_report_query(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(ReportQueryFailed):
            await run(engine, "DELETE FROM reports")
        await run(engine, "SELECT 1 AS one")
        await store(engine, a_report("Written afterwards"))
        assert "Written afterwards" in await report_names(engine)
    finally:
        await engine.dispose()


async def test_division_by_zero_half_way_fails_the_query(pg_engine: AsyncEngine) -> None:
    query = "SELECT n, 1 / (n - 150) AS boom FROM generate_series(1, 200) AS n"
    received: list[int] = []

    with pytest.raises(ReportQueryFailed) as caught:
        await stream(received, pg_engine, query, limit_seconds=10)

    assert caught.value.detail == "division by zero"
    assert caught.value.message == (
        "a value could not be processed; check the parameters you sent (SQLSTATE 22012, class 22)"
    )
    assert received == [100]


@pytest.mark.parametrize(
    ("value", "detail"),
    [("'0044-03-15 BC'::date", "ordinal must be >= 1"), ("'12000-01-01'::timestamptz", "date value out of range")],
)
async def test_a_date_outside_pythons_years_fails_the_query_saying_what_to_cast(
    pg_engine: AsyncEngine, value: str, detail: str
) -> None:
    query = f"SELECT n, CASE WHEN n = 1500 THEN {value} END AS moment FROM generate_series(1, 2000) AS n"
    received: list[int] = []

    with pytest.raises(ReportQueryFailed) as caught:
        await stream(received, pg_engine, query, limit_seconds=10)

    assert caught.value.message == UNREADABLE_VALUE
    assert caught.value.detail == detail
    assert sum(received) == 1400, "the batches before the one that holds it were streamed"


async def test_a_postgresql_query_past_its_time_limit_times_out(pg_engine: AsyncEngine) -> None:
    started = time.monotonic()

    with pytest.raises(ReportTimedOut):
        await run(pg_engine, "SELECT pg_sleep(5) AS slept", limit_seconds=0.3)

    assert time.monotonic() - started < 2


async def test_a_sqlite_query_past_its_time_limit_times_out(sqlite_engine: AsyncEngine) -> None:
    started = time.monotonic()

    with pytest.raises(ReportTimedOut):
        await run(sqlite_engine, ENDLESS, limit_seconds=0.3)

    assert time.monotonic() - started < 2


async def test_the_time_limit_covers_the_whole_stream_not_each_fetch(engine: AsyncEngine) -> None:
    received: list[int] = []
    last = Binding("last", ParameterType.INTEGER, 100_000)

    with pytest.raises(ReportTimedOut):
        await stream(received, engine, NUMBERS, last, limit_seconds=0.5, pause=0.1)

    assert 3 <= len(received) < 100


async def test_an_unknown_column_fails_with_the_database_message_as_detail_only(engine: AsyncEngine) -> None:
    with pytest.raises(ReportQueryFailed) as caught:
        await run(
            engine, "SELECT no_such_column FROM reports WHERE name = :name", Binding("name", ParameterType.STRING, "x")
        )

    detail, message = caught.value.detail, caught.value.message
    assert detail is not None
    assert "no_such_column" in detail, "the admin's detail is the database's message"
    assert "no_such_column" not in message, "the owner's message quotes nothing from the query"
    assert "administrator" in message
    for text in (detail, message):
        assert "FROM reports" not in text
        assert "\n" not in text


async def test_an_unreachable_database_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    try:
        with pytest.raises(StorageUnavailable):
            await run(engine, "SELECT 1")
    finally:
        await engine.dispose()


ADVISORY_KEY = 424242


async def advisory_lock_is_free(url: str) -> bool:
    """Whether another session can take ADVISORY_KEY at once."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            taken = await conn.scalar(sa.text(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})"))
            await conn.execute(sa.text(f"SELECT pg_advisory_unlock({ADVISORY_KEY})"))
            return bool(taken)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("query", "after"),
    [
        (f"SELECT pg_advisory_lock({ADVISORY_KEY}) IS NULL AS locked", "SELECT 1 AS n"),
        ("SELECT set_config('work_mem', '1234kB', false) AS setting", "SELECT current_setting('work_mem') AS n"),
        ("SELECT pg_listening_channels() AS c FROM (SELECT pg_notify('x', '')) AS n", "SELECT 1 AS n"),
    ],
    ids=["advisory-lock", "session-setting", "notify"],
)
async def test_nothing_a_report_does_outlives_it_on_its_pooled_connection(pg_url: str, query: str, after: str) -> None:
    """One pooled connection, so the next report gets the same one back: it must find it as a new one would be."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        with contextlib.suppress(ReportQueryFailed):
            await run(engine, query)
        _, _, batches = await run(engine, after)
        lock_free = await advisory_lock_is_free(pg_url)
    finally:
        await engine.dispose()

    assert lock_free
    assert batches[0][0][0] != "1234kB"


async def test_a_connection_left_with_a_prepared_statement_of_the_reports_is_discarded(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:  # what a report might leave behind, through a function of its own
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
            await conn.exec_driver_sql("PREPARE leftover AS SELECT 1")
            await conn.commit()
        _, _, batches = await run(engine, "SELECT pg_backend_pid() AS pid")  # the same pooled connection
        assert batches[0][0][0] == pid
        _, _, after = await run(engine, "SELECT pg_backend_pid() AS pid")
    finally:
        await engine.dispose()

    assert after[0][0][0] != pid
