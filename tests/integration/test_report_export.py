"""A report's rows from the real databases through the encoders into an artifact, as the worker runs them: the
exact bytes, and memory that stays flat however many rows stream through."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pypdf
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import RenderContext, RowEncoder
from domain.reports import Binding, ParameterType
from infrastructure.artifacts import FileSystemArtifactStore
from infrastructure.formats import installed_encoders
from infrastructure.persistence.data_source import SqlReportDataSource

CONTEXT = RenderContext(title="Export", parameters={}, generated_at=datetime(2026, 12, 4, tzinfo=UTC))


def encoder_of(fmt: str) -> RowEncoder:
    return installed_encoders()[fmt](CONTEXT)


pytestmark = pytest.mark.integration

PORTABLE = (
    "WITH t(n, label, amount) AS (VALUES (1, 'plain', 1.5), (2, 'a,b \"quoted\"', NULL), (3, NULL, -0.25),"
    " (4, 'two\nlines', 2.0))\nSELECT n, label, amount FROM t ORDER BY n"
)
POSTGRES_TYPES = (
    "SELECT g AS id, round((g * 0.37)::numeric, 2) AS amount, md5(g::text) AS label, DATE '2024-01-01' + g AS day,"
    " (g % 2 = 0) AS flag, TIMESTAMPTZ '2024-01-02 03:04:05+02' AS at, 0.00000000::numeric AS zero,"
    " ('00000000-0000-0000-0000-00000000000' || g)::uuid AS ref, ARRAY[g, NULL] AS arr, NULL::int AS nothing"
    " FROM generate_series(1, 2) AS g"
)
WIDE_ROWS = (
    "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :last)\n"
    "SELECT n, n * 2 AS doubled, n * 0.5 AS half, 'row ' || n || ' of a report with a fairly long label' AS label"
    " FROM numbers"
)


async def export(engine: AsyncEngine, root: Path, query: str, fmt: str, *bindings: Binding) -> bytes:
    store = FileSystemArtifactStore(root, flush_bytes=64 * 1024)
    encoder = encoder_of(fmt)
    try:
        async with (
            SqlReportDataSource(engine, batch_size=2).run(query, bindings, 10) as rows,
            store.create(f"report.{fmt}") as sink,
        ):
            await sink.write(encoder.begin(rows.columns))
            async for batch in rows.batches():
                await sink.write(encoder.encode(batch))
            async for chunk in encoder.end():
                await sink.write(chunk)
    finally:
        encoder.close()
    return (root / f"report.{fmt}").read_bytes()


async def test_csv_export_is_byte_exact(engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(engine, tmp_path, PORTABLE, "csv")

    assert data == b'n,label,amount\r\n1,plain,1.5\r\n2,"a,b ""quoted""",\r\n3,,-0.25\r\n4,"two\nlines",2.0\r\n'


async def test_json_export_is_byte_exact(engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(engine, tmp_path, PORTABLE, "json")

    assert data == (
        b'[\n{"n":1,"label":"plain","amount":1.5},\n{"n":2,"label":"a,b \\"quoted\\"","amount":null},\n'
        b'{"n":3,"label":null,"amount":-0.25},\n{"n":4,"label":"two\\nlines","amount":2.0}\n]\n'
    )


async def test_postgresql_types_export_byte_exact(pg_engine: AsyncEngine, tmp_path: Path) -> None:
    csv_data = await export(pg_engine, tmp_path, POSTGRES_TYPES, "csv")
    json_data = await export(pg_engine, tmp_path, POSTGRES_TYPES, "json")

    assert csv_data == (
        b"id,amount,label,day,flag,at,zero,ref,arr,nothing\r\n"
        b"1,0.37,c4ca4238a0b923820dcc509a6f75849b,2024-01-02,false,2024-01-02T01:04:05Z,0.00000000,"
        b'00000000-0000-0000-0000-000000000001,"[1,null]",\r\n'
        b"2,0.74,c81e728d9d4c2f636f067f89cc14862c,2024-01-03,true,2024-01-02T01:04:05Z,0.00000000,"
        b'00000000-0000-0000-0000-000000000002,"[2,null]",\r\n'
    )
    assert json_data == (
        b'[\n{"id":1,"amount":0.37,"label":"c4ca4238a0b923820dcc509a6f75849b","day":"2024-01-02","flag":false,'
        b'"at":"2024-01-02T01:04:05Z","zero":0E-8,"ref":"00000000-0000-0000-0000-000000000001",'
        b'"arr":[1,null],"nothing":null},\n'
        b'{"id":2,"amount":0.74,"label":"c81e728d9d4c2f636f067f89cc14862c","day":"2024-01-03","flag":true,'
        b'"at":"2024-01-02T01:04:05Z","zero":0E-8,"ref":"00000000-0000-0000-0000-000000000002",'
        b'"arr":[2,null],"nothing":null}\n]\n'
    )


async def peak_bytes_of_export(engine: AsyncEngine, root: Path, fmt: str, rows: int) -> int:
    """The most memory (traced Python allocations) held at once while `rows` rows were exported."""
    store = FileSystemArtifactStore(root)
    encoder = encoder_of(fmt)
    source = SqlReportDataSource(engine)
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        async with (
            source.run(WIDE_ROWS, [Binding("last", ParameterType.INTEGER, rows)], 60) as stream,
            store.create(f"{fmt}-{rows}") as sink,
        ):
            await sink.write(encoder.begin(stream.columns))
            async for batch in stream.batches():
                await sink.write(encoder.encode(batch))
            async for chunk in encoder.end():
                await sink.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        encoder.close()
    assert sink.size > rows * (10 if fmt == "xlsx" else 50)  # the rows were all written (XLSX is compressed)
    return peak - baseline


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "xlsx"])
async def test_memory_stays_flat_while_rows_stream_through(engine: AsyncEngine, tmp_path: Path, fmt: str) -> None:
    small = await peak_bytes_of_export(engine, tmp_path, fmt, 20_000)
    large = await peak_bytes_of_export(engine, tmp_path, fmt, 100_000)

    # 100,000 rows are about 9 MB of output and more in Python objects: holding them, or a growing share of them,
    # would show. A few batches and a flush buffer are all that may be held.
    assert large < 6_000_000
    assert large < small * 1.3 + 500_000


PORTABLE_VALUES: list[list[Any]] = [
    [1, "plain", 1.5],
    [2, 'a,b "quoted"', None],
    [3, None, -0.25],
    [4, "two\nlines", 2.0],
]


async def test_xlsx_export_reads_back_with_typed_cells(engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(engine, tmp_path, PORTABLE, "xlsx")

    [sheet] = openpyxl.load_workbook(io.BytesIO(data)).worksheets
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows == [["n", "label", "amount"], *PORTABLE_VALUES]
    assert [cell.data_type for cell in sheet[2]] == ["n", "s", "n"]


async def test_xlsx_export_of_postgresql_types(pg_engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(pg_engine, tmp_path, POSTGRES_TYPES, "xlsx")

    [sheet] = openpyxl.load_workbook(io.BytesIO(data)).worksheets
    header, first, _ = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert header == ["id", "amount", "label", "day", "flag", "at", "zero", "ref", "arr", "nothing"]
    assert first == [
        1,
        0.37,
        "c4ca4238a0b923820dcc509a6f75849b",
        datetime(2024, 1, 2),  # noqa: DTZ001 - Excel's dates have no zone
        False,
        datetime(2024, 1, 2, 1, 4, 5),  # noqa: DTZ001 - timestamptz, written in UTC
        0,
        "00000000-0000-0000-0000-000000000001",
        "[1,null]",
        None,
    ]
    assert sheet["D2"].number_format == "yyyy-mm-dd"


async def test_parquet_export_reads_back_with_column_types(engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(engine, tmp_path, PORTABLE, "parquet")

    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == ["n", "label", "amount"]
    assert (str(table.schema.field("n").type), str(table.schema.field("label").type)) == ("int64", "string")
    assert table.column("n").to_pylist() == [1, 2, 3, 4]
    assert table.column("label").to_pylist() == [row[1] for row in PORTABLE_VALUES]
    amounts = table.column("amount").to_pylist()  # a decimal on PostgreSQL, a double on SQLite
    assert [None if a is None else float(a) for a in amounts] == [1.5, None, -0.25, 2.0]


async def test_parquet_export_of_postgresql_types(pg_engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(pg_engine, tmp_path, POSTGRES_TYPES, "parquet")

    schema = pq.read_schema(io.BytesIO(data))
    types = {field.name: str(field.type) for field in schema}
    assert types == {
        "id": "int64",
        "amount": "decimal128(38, 2)",
        "label": "string",
        "day": "date32[day]",
        "flag": "bool",
        "at": "timestamp[us, tz=UTC]",
        "zero": "decimal128(38, 8)",
        "ref": "string",
        "arr": "string",
        "nothing": "string",
    }
    first = pq.read_table(io.BytesIO(data)).to_pylist()[0]
    assert (first["amount"], first["day"], first["ref"], first["arr"]) == (
        Decimal("0.37"),
        date(2024, 1, 2),
        "00000000-0000-0000-0000-000000000001",
        "[1,null]",
    )


async def test_pdf_export_reads_back_with_its_title_header_and_rows(engine: AsyncEngine, tmp_path: Path) -> None:
    data = await export(engine, tmp_path, PORTABLE, "pdf")

    reader = pypdf.PdfReader(io.BytesIO(data))
    text = reader.pages[0].extract_text()
    assert reader.metadata is not None
    assert reader.metadata.title == "Export"
    for expected in ("Export", "n", "label", "amount", "plain", 'a,b "quoted"', "-0.25", "4 rows."):
        assert expected in text
    page = pdfium.PdfDocument(data)[0].render(scale=1).to_pil().convert("L")
    assert page.getextrema()[0] < 128, "the first page renders, and not blank"
