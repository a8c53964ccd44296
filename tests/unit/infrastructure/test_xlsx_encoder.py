"""XLSX results, read back with openpyxl: typed cells, the header, sheets past Excel's row limit, formulas never."""
# ruff: noqa: DTZ001 - Excel's dates have no time zone: openpyxl reads them back naive.

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from application.ports import Row
from infrastructure.xlsx import MAX_CELL_TEXT, XlsxEncoder


async def xlsx_of(columns: Sequence[str], *batches: Sequence[Row], sheet_rows: int | None = None) -> bytes:
    """The workbook of these rows, written as the worker writes it: begin, a batch at a time, end, close."""
    encoder = XlsxEncoder() if sheet_rows is None else XlsxEncoder(sheet_rows=sheet_rows)
    try:
        data = encoder.begin(columns) + b"".join(encoder.encode(batch) for batch in batches)
        return data + b"".join([chunk async for chunk in encoder.end()])
    finally:
        encoder.close()


def sheets(data: bytes) -> list[Worksheet]:
    return list(openpyxl.load_workbook(io.BytesIO(data)).worksheets)


def values(sheet: Worksheet) -> list[list[Any]]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


async def test_cells_are_typed_as_the_query_returned_them() -> None:
    row = (42, 1.5, Decimal("12.34"), True, "plain", date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5), None)
    columns = ["int", "float", "decimal", "bool", "text", "day", "at", "nothing"]

    [sheet] = sheets(await xlsx_of(columns, [row]))

    header, cells = list(sheet.iter_rows())
    assert [c.value for c in header] == columns
    assert [c.value for c in cells] == [42, 1.5, 12.34, True, "plain", datetime(2026, 1, 2), row[6], None]
    assert [c.data_type for c in cells[:5]] == ["n", "n", "n", "b", "s"]
    assert cells[5].number_format == "yyyy-mm-dd"
    assert cells[6].number_format == "yyyy-mm-dd hh:mm:ss"


async def test_the_header_is_bold_frozen_and_filtered_and_columns_are_fitted() -> None:
    [sheet] = sheets(await xlsx_of(["id", "a fairly long column name"], [(1, "x"), (2, "y")]))

    assert all(cell.font.b for cell in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:B3"
    assert sheet.column_dimensions["B"].width > sheet.column_dimensions["A"].width


async def test_text_that_excel_would_run_as_a_formula_is_written_as_text() -> None:
    dangerous = ["=1+1", "+A1", "-2+3", "@SUM(A1)", '=HYPERLINK("http://example.invalid")']
    data = await xlsx_of(["v"], [(v,) for v in dangerous])

    [sheet] = sheets(data)
    assert [row[0] for row in values(sheet)[1:]] == dangerous
    assert all(cell.data_type == "s" for (cell,) in sheet.iter_rows(min_row=2))
    sheet_xml = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet_xml


async def test_numbers_beyond_excels_15_digits_are_text_so_that_no_digit_is_lost() -> None:
    row = (2**63 - 1, 10**15 - 1, Decimal("1234567890.123456789"), Decimal("-0.5"))

    [sheet] = sheets(await xlsx_of(["big", "largest exact", "long decimal", "short decimal"], [row]))

    assert values(sheet)[1] == ["9223372036854775807", 10**15 - 1, "1234567890.123456789", -0.5]


async def test_values_excel_has_no_type_for_are_their_iso_or_json_text() -> None:
    row = (
        datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        date(1850, 7, 1),
        datetime(1899, 12, 31, 23, 0),
        time(1, 2, 3),
        timedelta(hours=1, seconds=5),
        UUID(int=5),
        b"\x00\x01\xff",
        [1, None, 2.5],
        {"k": [1, "x"]},
        float("nan"),
        float("-inf"),
        Decimal("NaN"),
    )
    columns = ["aware", "old day", "old at", "t", "span", "id", "blob", "arr", "doc", "nan", "-inf", "dnan"]

    [sheet] = sheets(await xlsx_of(columns, [row]))

    assert values(sheet)[1] == [
        datetime(2026, 1, 2, 3, 4, 5),  # in UTC
        "1850-07-01",
        "1899-12-31T23:00:00",
        "01:02:03",
        "PT3605S",  # as CSV and JSON write it
        "00000000-0000-0000-0000-000000000005",
        "AAH/",
        "[1,null,2.5]",
        '{"k":[1,"x"]}',
        None,
        None,
        None,
    ]


async def test_unicode_and_control_characters_survive_and_long_text_is_cut_at_excels_limit() -> None:
    text = "東京 مرحبا 😀 ✓"
    long = "x" * (MAX_CELL_TEXT + 10)

    [sheet] = sheets(await xlsx_of(["名前 😀", "ctl", "long"], [(text, "a\x00b\x07c", long)]))

    [header, row] = values(sheet)
    assert header == ["名前 😀", "ctl", "long"]
    assert row[0] == text
    assert row[1] == "a\x00b\x07c" or row[1] == "a_x0000_b_x0007_c"
    assert len(row[2]) == MAX_CELL_TEXT
    assert row[2].endswith("…")


async def test_no_rows_is_a_sheet_with_the_header_alone() -> None:
    [sheet] = sheets(await xlsx_of(["a", "b"]))

    assert values(sheet) == [["a", "b"]]


async def test_one_column_and_two_hundred_columns() -> None:
    wide = [f"c{n}" for n in range(200)]

    [narrow_sheet] = sheets(await xlsx_of(["only"], [(1,), (2,)]))
    [wide_sheet] = sheets(await xlsx_of(wide, [tuple(range(200))]))

    assert values(narrow_sheet) == [["only"], [1], [2]]
    assert values(wide_sheet) == [wide, list(range(200))]


async def test_repeated_column_names_get_a_suffix_rather_than_losing_a_column() -> None:
    [sheet] = sheets(await xlsx_of(["n", "n", "n"], [(1, 2, 3)]))

    assert values(sheet) == [["n", "n_2", "n_3"], [1, 2, 3]]


async def test_nulls_in_every_type_are_empty_cells() -> None:
    full = (1, "a", date(2026, 1, 1), Decimal(1), True)
    rows = [full, (None, None, None, None, None), full]

    [sheet] = sheets(await xlsx_of(["i", "s", "d", "m", "b"], rows))

    assert values(sheet)[2] == [None] * 5
    assert len(values(sheet)) == 4


async def test_rows_past_a_sheets_limit_continue_on_a_new_sheet_with_the_header_repeated() -> None:
    batches = [[(n, f"row {n}") for n in range(start, start + 4)] for start in range(0, 12, 4)]

    data = await xlsx_of(["n", "label"], *batches, sheet_rows=5)

    workbook = sheets(data)
    assert [sheet.title for sheet in workbook] == ["Rows", "Rows 2", "Rows 3"]
    assert [len(values(sheet)) - 1 for sheet in workbook] == [5, 5, 2]
    assert all(values(sheet)[0] == ["n", "label"] for sheet in workbook)
    assert [row[0] for sheet in workbook for row in values(sheet)[1:]] == list(range(12))
    assert [sheet.freeze_panes for sheet in workbook] == ["A2"] * 3
    assert [sheet.auto_filter.ref for sheet in workbook] == ["A1:B6", "A1:B6", "A1:B3"]


@pytest.mark.parametrize("sheet_rows", [4, 8])
async def test_a_sheet_that_ends_with_a_batch_takes_no_empty_sheet_after_it(sheet_rows: int) -> None:
    batches = [[(n,) for n in range(start, start + 4)] for start in range(0, 8, 4)]

    workbook = sheets(await xlsx_of(["n"], *batches, sheet_rows=sheet_rows))

    assert [len(values(sheet)) - 1 for sheet in workbook] == [sheet_rows] * (8 // sheet_rows)


async def test_closing_before_the_end_stops_the_writer_and_leaves_no_temporary_files() -> None:
    encoder = XlsxEncoder()
    encoder.begin(["n"])
    encoder.encode([(n,) for n in range(1000)])
    directory, writer = Path(encoder._dir), encoder._writer  # the one place its files are, and its thread

    encoder.close()

    assert not directory.exists()  # noqa: ASYNC240 - a stat, in a test
    assert writer is not None
    assert not writer.is_alive()


async def test_timestamps_are_excel_dates_whatever_their_zone() -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

    [sheet] = sheets(await xlsx_of(["at"], [(at,)]))

    assert values(sheet)[1] == [datetime(2026, 3, 4, 5, 6, 7)]


async def test_a_column_of_decimals_naive_and_aware_timestamps_and_nulls_keeps_each_value() -> None:
    aware = datetime(2026, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    rows = [(Decimal("1.25"), datetime(2026, 3, 4, 5, 6, 7)), (None, aware), (Decimal("-3"), None)]

    [sheet] = sheets(await xlsx_of(["d", "at"], rows))

    assert values(sheet)[1:] == [
        [1.25, datetime(2026, 3, 4, 5, 6, 7)],
        [None, datetime(2026, 3, 4, 5, 6, 7)],
        [-3, None],
    ]
