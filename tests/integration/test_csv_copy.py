"""A big CSV report through PostgreSQL's COPY: the same bytes as the CSV encoder writes from the rows, for every
type that COPY is used for and the values where the two could differ; and the query's safeguards kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import EncodingDeclined, ReportQueryFailed, ReportTimedOut
from application.ports import RenderContext
from domain.reports import Binding, ParameterType
from infrastructure.encoders import CsvEncoder
from infrastructure.persistence.csv_copy import COPY_RULES
from infrastructure.persistence.data_source import SqlReportDataSource

pytestmark = pytest.mark.integration

EDGE_ROWS = [
    # text, varchar, bpchar, int2, int4, int8, numeric, bool, date, uuid
    ("'plain'", "'v'", "'ab'", "0", "0", "0", "0", "true", "'2024-01-01'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("''", "''", "''", "'-32768'", "'-2147483648'", "'-9223372036854775808'", "0.00", "false", "'0001-01-01'", "NULL"),
    ("NULL", "NULL", "NULL", "32767", "2147483647", "9223372036854775807", "-0.37", "NULL", "'9999-12-31'", "NULL"),
    ("'a,b'", "'say \"hi\"'", "'\"'", "NULL", "NULL", "NULL", "1e-30", "true", "'0044-03-15'", "NULL"),
    ("E'two\\nlines'", "E'cr\\rlf\\r\\n'", "','", "1", "1", "1", "1e30", "false", "NULL", "NULL"),
    ("' leading space'", "'trailing '", "' '", "2", "2", "2", "123456789012345678901234567890.123456789", "true",
     "'2000-02-29'", "'00000000-0000-0000-0000-000000000000'"),
    ("'\\.'", "'\\.'", "'\\.'", "3", "3", "3", "'NaN'", "false", "'1970-01-01'", "NULL"),
    ("'ünïcödé 漢字 עברית 😀'", "'=1+2'", "'t'", "4", "4", "4", "'Infinity'", "NULL", "NULL", "NULL"),
    ("'NaN'", "'t'", "'f'", "5", "5", "5", "'-Infinity'", "true", "'2024-12-31'", "NULL"),
    ("'\"\"'", "','", "E'\\n'", "6", "6", "6", "1.50", "true", "'2024-06-15'", "NULL"),
]  # fmt: skip
TYPES = ("text", "varchar", "char(3)", "int2", "int4", "int8", "numeric", "bool", "date", "uuid")
COLUMNS = ("t", "v", "c", "s", "i", "b", "n", "f", "d", "u")


def values_query(rows: Sequence[tuple[str, ...]]) -> str:
    typed = [", ".join(f"{value}::{kind}" for value, kind in zip(row, TYPES, strict=True)) for row in rows]
    return f"SELECT * FROM (VALUES ({'), ('.join(typed)})) AS v({', '.join(COLUMNS)})"


EDGES = values_query(EDGE_ROWS)
UNQUOTED = values_query([EDGE_ROWS[index] for index in (0, 2, 5, 6, 7, 8)])  # no field that COPY quotes
# More than one block of COPY's output (64 KiB), with a quoted field every 700 rows: blocks of both kinds.
MANY_ROWS = (
    "SELECT g AS id, CASE WHEN g % 700 = 0 THEN 'quote \"' || g ELSE md5(g::text) END AS label,"
    " round((g * 0.37)::numeric, 2) AS amount, DATE '2024-01-01' + (g % 366)::int AS day, (g % 3 = 0) AS flag"
    " FROM generate_series(1, 6000) AS g"
)


async def encoded_rows(engine: AsyncEngine, query: str) -> bytes:
    """The report as the worker writes it when it encodes the rows itself."""
    encoder = CsvEncoder()
    async with SqlReportDataSource(engine, batch_size=2).run(query, (), 10) as rows:
        head = encoder.begin(rows.columns)
        return head + b"".join([encoder.encode(batch) async for batch in rows.batches()])


async def copied_rows(engine: AsyncEngine, query: str, *bindings: Binding, limit_seconds: float = 10) -> bytes:
    """The report as COPY writes it (failing the test if COPY is not used), and the rows it counted."""
    encoder = CsvEncoder()
    async with SqlReportDataSource(engine, batch_size=2).run(query, bindings, limit_seconds) as rows:
        head = encoder.begin(rows.columns)
        chunks = rows.encoded(encoder)
        assert chunks is not None
        blocks = [block async for block in chunks]
    assert sum(block.rows for block in blocks) == (await count(engine, query, *bindings))
    return head + b"".join(block.data for block in blocks)


async def count(engine: AsyncEngine, query: str, *bindings: Binding) -> int:
    async with SqlReportDataSource(engine).run(query, bindings, 10) as rows:
        return sum([len(batch) async for batch in rows.batches()])


async def test_the_edge_values_cover_every_type_that_copy_is_used_for(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        statement = await raw.driver_connection.prepare(EDGES)  # type: ignore[union-attr]
        oids = {attribute.type.oid for attribute in statement.get_attributes()}

    assert oids == set(COPY_RULES)


@pytest.mark.parametrize("query", [EDGES, UNQUOTED, MANY_ROWS], ids=["edge-values", "unquoted", "many-blocks"])
async def test_copy_writes_the_bytes_that_the_csv_encoder_writes(pg_engine: AsyncEngine, query: str) -> None:
    assert await copied_rows(pg_engine, query) == await encoded_rows(pg_engine, query)


@pytest.mark.parametrize("day", ["infinity", "-infinity", "0044-03-15 BC", "10000-01-01"])
async def test_copy_declines_a_date_that_the_encoder_would_write_otherwise(pg_engine: AsyncEngine, day: str) -> None:
    query = f"SELECT g, CASE WHEN g = 3 THEN DATE '{day}' END AS day FROM generate_series(1, 4) AS g"

    with pytest.raises(EncodingDeclined):
        await copied_rows(pg_engine, query)
    assert await count(pg_engine, "SELECT 1 AS a, 2 AS b") == 1  # the pool still serves


@pytest.mark.parametrize(
    "query",
    [
        "SELECT g AS only_column FROM generate_series(1, 5) AS g",
        "SELECT g, g * 0.5::float8 AS half FROM generate_series(1, 5) AS g",
        "SELECT g, now() AS at FROM generate_series(1, 5) AS g",
        "SELECT g, '$1' AS dollars FROM generate_series(1, 5) AS g",
        "SELECT 1 AS a, 2 AS b",  # one short batch: the rows are already here
    ],
    ids=["one-column", "float", "timestamptz", "dollar-sign", "small"],
)
async def test_copy_is_not_used_where_it_would_differ(pg_engine: AsyncEngine, query: str) -> None:
    async with SqlReportDataSource(pg_engine, batch_size=2).run(query, (), 10) as rows:
        assert rows.encoded(CsvEncoder()) is None


async def test_copy_is_not_used_with_csv_formula_escape(pg_engine: AsyncEngine) -> None:
    escaping = CsvEncoder(
        RenderContext(title="r", parameters={}, generated_at=datetime.now(UTC), csv_formula_escape=True)
    )
    async with SqlReportDataSource(pg_engine, batch_size=2).run(MANY_ROWS, (), 10) as rows:
        assert rows.encoded(escaping) is None


async def test_copy_binds_parameters_as_the_cursor_does(pg_engine: AsyncEngine) -> None:
    query = "SELECT g, :label AS label, g < :last AS early FROM generate_series(1, :last) AS g"
    bindings = (Binding("last", ParameterType.INTEGER, 5), Binding("label", ParameterType.STRING, "it's; -- ok"))

    data = await copied_rows(pg_engine, query, *bindings)

    assert data.splitlines()[-2:] == [b"4,it's; -- ok,true", b"5,it's; -- ok,false"]


async def test_copy_keeps_the_time_limit(pg_engine: AsyncEngine) -> None:
    endless = "SELECT g, g AS h FROM generate_series(1, 1000000000) AS g"
    started = time.monotonic()

    with pytest.raises(ReportTimedOut):
        await copied_rows(pg_engine, endless, limit_seconds=0.5)
    assert time.monotonic() - started < 5


async def test_copy_reports_an_error_of_a_later_row(pg_engine: AsyncEngine) -> None:
    failing = "SELECT g, 1 / (50000 - g) AS x FROM generate_series(1, 100000) AS g"

    with pytest.raises(ReportQueryFailed):
        await asyncio.wait_for(copied_rows(pg_engine, failing), 10)
