"""XLSX: typed cells, a bold frozen header with an autofilter, fitted column widths; written as the rows stream.

The workbook is written by rustpy-xlsxwriter (rust_xlsxwriter in its constant-memory mode) in a thread of its own,
which takes the rows from a short queue: the event loop converts a batch and hands it over, the writer turns it into
XML and compresses it meanwhile. A sheet holds at most Excel's 1,048,576 rows (the header and 1,048,575 rows); the
rows after that go on a new sheet with the header repeated, written as a workbook of its own and merged into the
first at the end.

Values, as Excel holds them:
- integers and decimals are numbers, unless they have more than 15 significant digits (what Excel keeps of a
  number): those are text, so that no digit is lost;
- floats are numbers; NaN and infinities are empty cells, as NULL is (the JSON rule);
- dates and timestamps are Excel dates (`yyyy-mm-dd`, `yyyy-mm-dd hh:mm:ss`); a timestamp with a time zone is
  written in UTC. Excel has no date before 1900: such a value is ISO 8601 text;
- booleans are booleans; times, intervals and UUIDs are their ISO 8601 text; binary values are base64 text; arrays
  and JSON documents are compact JSON text;
- text is text, never a formula, whatever it starts with (`=`, `+`, `-`, `@`); text past Excel's 32,767 characters
  per cell is cut, ending in `…`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import msgspec
import rustpy_xlsxwriter as xlsx

from application.ports import RenderContext, Row, RowEncoder
from infrastructure.encoders import FILE_CHUNK_BYTES, file_chunks, unique_names, value_text

SHEET_ROWS = 1_048_575
"""Rows of data per sheet: Excel's 1,048,576 rows, less the header."""
MAX_CELL_TEXT = 32_767
"""Characters Excel keeps in one cell."""
EXACT_DIGITS = 15
"""Significant digits Excel keeps of a number."""
_EXACT_LIMIT = 10**EXACT_DIGITS
_SHEET_NAME = "Rows"
_DATE_FORMAT = "yyyy-mm-dd"
_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
_QUEUE_BATCHES = 8
"""Batches converted ahead of the writer: enough to keep both busy, few enough to keep memory flat."""
_PUT_POLL_SECONDS = 0.5
_DONE = None
_FIRST_EXCEL_YEAR = 1900
_TO_BUILTINS = msgspec.to_builtins


class XlsxEncoder(RowEncoder):
    """Rows to one XLSX workbook (see the module's docstring for how each value is written)."""

    def __init__(self, context: RenderContext | None = None, *, sheet_rows: int = SHEET_ROWS) -> None:
        self._sheet_rows = sheet_rows
        self._names: list[str] = []
        self._dir = tempfile.mkdtemp(prefix="reportgen-xlsx-")
        self._sheets: list[str] = []
        self._batches: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(_QUEUE_BATCHES)
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._ended = False
        """The writer took the end of the rows from the queue (touched by the writer thread only)."""

    def begin(self, columns: Sequence[str]) -> bytes:
        self._names = unique_names(columns)  # a row is a dict to the writer: a repeated name would lose a column
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        if rows:
            self._hand_over([dict(zip(self._names, row, strict=True)) for row in _excel_rows(rows, len(self._names))])
        return b""

    async def end(self) -> AsyncIterator[bytes]:
        # No rows: a record of empty cells is a sheet with the header alone.
        writer = self._writer or self._hand_over([dict.fromkeys(self._names)])
        self._put(_DONE)
        await asyncio.to_thread(writer.join)
        self._raise_failure()
        path = self._sheets[0] if len(self._sheets) == 1 else await asyncio.to_thread(self._merged)
        file = await asyncio.to_thread(open, path, "rb")
        try:
            async for chunk in file_chunks(file):
                yield chunk
        finally:
            file.close()

    def close(self) -> None:
        self._stop.set()
        if self._writer is not None:
            with contextlib.suppress(queue.Full):
                self._batches.put_nowait(_DONE)
            self._writer.join()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _hand_over(self, records: list[dict[str, Any]]) -> threading.Thread:
        """Queue converted rows for the writer, starting it with the first (which decide the date columns)."""
        if self._writer is None:
            formats = _column_formats(self._names, records)
            self._writer = threading.Thread(target=self._write, args=(formats,), name="xlsx-writer", daemon=True)
            self._writer.start()
        self._put(records)
        return self._writer

    def _put(self, item: list[dict[str, Any]] | None) -> None:
        """Queue `item` for the writer, waiting while the queue is full, unless the writer has stopped."""
        while True:
            self._raise_failure()
            try:
                self._batches.put(item, timeout=_PUT_POLL_SECONDS)
                return
            except queue.Full:
                if self._writer is not None and not self._writer.is_alive():
                    self._raise_failure()
                    raise RuntimeError("the XLSX writer stopped before the rows were written") from None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the XLSX writer failed") from self._failure

    def _write(self, formats: dict[str, xlsx.Format]) -> None:
        """The writer thread: one workbook file per sheet, until the rows end (or the encoder is closed)."""
        try:
            pending = self._take()
            while pending is not None and not self._stop.is_set():
                path = os.path.join(self._dir, f"sheet{len(self._sheets) + 1}.xlsx")
                rest: list[list[dict[str, Any]]] = []
                xlsx.write_worksheet(
                    self._sheet(pending, rest),
                    path,
                    sheet_name=_SHEET_NAME,
                    freeze_row=1,
                    bold_headers=True,
                    autofilter=True,
                    autofit=True,
                    column_formats=formats,
                    datetime_format=_DATETIME_FORMAT,
                )
                self._sheets.append(path)
                pending = rest[0] if rest else self._take()
        except BaseException as exc:  # the encoder raises it where the rows come from
            self._failure = exc

    def _take(self) -> list[dict[str, Any]] | None:
        """The next batch from the queue; None once the rows have ended."""
        if self._ended:
            return None
        batch = self._batches.get()
        self._ended = batch is None
        return batch

    def _sheet(self, first: list[dict[str, Any]], rest: list[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        """The rows of one sheet, taken from the queue. The rows past the sheet's end (a batch split at it, or the
        batch that follows a full sheet) are left in `rest`: they start the next sheet."""
        batch: list[dict[str, Any]] | None = first
        room = self._sheet_rows
        while batch is not None:
            if self._stop.is_set():
                raise _Stopped
            if len(batch) > room:
                yield from batch[:room]
                rest.append(batch[room:])
                return
            yield from batch
            room -= len(batch)
            batch = self._take()
            if not room and batch is not None:
                rest.append(batch)
                return

    def _merged(self) -> str:
        path = os.path.join(self._dir, "workbook.xlsx")
        merge_sheets(self._sheets, path)
        return path


def _excel_rows(rows: Sequence[Row], width: int) -> list[Row]:
    """The rows with each column's values as Excel can hold them: a column whose values all need nothing is left
    as it is (the usual case, checked in C), the others converted value by value."""
    columns = [list(map(itemgetter(index), rows)) for index in range(width)]
    converted = [_excel_column(values) for values in columns]
    if all(new is old for new, old in zip(converted, columns, strict=True)):
        return list(rows)
    return list(zip(*converted, strict=True)) if width else list(rows)


def _excel_column(values: list[Any]) -> list[Any]:
    """`excel_value` of each value; for a column of one type whose values all pass as they are (checked in C), the
    values themselves, or (decimals) their floats, which is what Excel keeps of them."""
    kinds = set(map(type, values))
    nullable = type(None) in kinds
    kinds.discard(type(None))
    present = [value for value in values if value is not None] if nullable else values
    if len(kinds) == 1 and _passes(kinds.pop(), present):
        if not isinstance(present[0], Decimal):
            return values
        floats = iter(map(float, present))
        return [None if value is None else next(floats) for value in values] if nullable else list(floats)
    return list(map(excel_value, values))


def _passes(kind: type, present: list[Any]) -> bool:
    """Whether every value of a column of type `kind` (NULLs left out) is written as it is: `excel_value` would
    return it unchanged (a decimal: its float)."""
    if kind is str:
        return max(map(len, present)) <= MAX_CELL_TEXT
    if kind is int:
        return bool(min(present) > -_EXACT_LIMIT and max(present) < _EXACT_LIMIT)
    if kind is float:
        return all(map(math.isfinite, present))
    if kind is bool:
        return True
    if kind is Decimal:
        # The text of a finite decimal holds each of its digits (NaN and infinities hold an "n" or "N"), so a text
        # of at most EXACT_DIGITS characters has at most that many digits.
        texts: list[str] = _TO_BUILTINS(present)
        return max(map(len, texts)) <= EXACT_DIGITS and not any(letter in "".join(texts) for letter in "nN")
    if kind is datetime and any(value.tzinfo is not None for value in present):
        return False  # written in UTC, value by value
    if kind is date or kind is datetime:
        return bool(min(present).year >= _FIRST_EXCEL_YEAR)
    return False


def excel_value(value: Any) -> Any:
    """One value as the writer is given it: a number, a bool, a naive datetime or date in Excel's range, text, or
    None (an empty cell)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_CELL_TEXT else value[: MAX_CELL_TEXT - 1] + "…"
    if isinstance(value, int):
        return value if -_EXACT_LIMIT < value < _EXACT_LIMIT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return value if len(value.as_tuple().digits) <= EXACT_DIGITS else format(value, "f")
    if isinstance(value, datetime):
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return utc if utc.year >= _FIRST_EXCEL_YEAR else utc.isoformat()
    if isinstance(value, date):
        return value if value.year >= _FIRST_EXCEL_YEAR else value.isoformat()
    return excel_value(value_text(value))  # time, interval, UUID, binary, array, JSON document: as CSV writes it


class _Stopped(Exception):
    """The encoder was closed before the rows ended: the writer thread stops writing."""


def _column_formats(names: Sequence[str], records: Sequence[dict[str, Any]]) -> dict[str, xlsx.Format]:
    """A date format for each column whose first values are dates without a time (timestamps take the writer's
    `datetime_format`)."""
    formats = {}
    for name in names:
        first = next((record[name] for record in records if record[name] is not None), None)
        if isinstance(first, date) and not isinstance(first, datetime):
            formats[name] = xlsx.Format().set_num_format(_DATE_FORMAT)
    return formats


# --- more than one sheet --------------------------------------------------------------------------------------
_WORKBOOK = "xl/workbook.xml"
_RELS = "xl/_rels/workbook.xml.rels"
_TYPES = "[Content_Types].xml"
_APP = "docProps/app.xml"
_SHEET_XML = "xl/worksheets/sheet1.xml"
_WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_WORKSHEET_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"
_FILTER = re.compile(r'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">[^<]*</definedName>')


def merge_sheets(paths: Sequence[str], target: str) -> None:
    """One workbook of the one-sheet workbooks at `paths` (written alike: same styles, same columns), its sheets
    named `Rows`, `Rows 2`, `Rows 3`, ... in order."""
    names = [_SHEET_NAME, *(f"{_SHEET_NAME} {n}" for n in range(2, len(paths) + 1))]
    with zipfile.ZipFile(paths[0]) as base, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        parts: dict[str, Callable[[str], str]] = {
            _WORKBOOK: lambda xml: _workbook_xml(xml, names, paths),
            _RELS: lambda xml: _before(
                "</Relationships>",
                xml,
                (
                    f'<Relationship Id="rIdSheet{n}" Type="{_WORKSHEET_REL}" Target="worksheets/sheet{n}.xml"/>'
                    for n in range(2, len(paths) + 1)
                ),
            ),
            _TYPES: lambda xml: _before(
                "</Types>",
                xml,
                (
                    f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{_WORKSHEET_TYPE}"/>'
                    for n in range(2, len(paths) + 1)
                ),
            ),
            _APP: lambda xml: _app_xml(xml, names),
        }
        for info in base.infolist():
            with base.open(info) as part:
                if info.filename in parts:
                    out.writestr(info.filename, parts[info.filename](part.read().decode()))
                else:
                    with out.open(info.filename, "w") as copy:
                        shutil.copyfileobj(part, copy, FILE_CHUNK_BYTES)
        for n, path in enumerate(paths[1:], start=2):
            with zipfile.ZipFile(path) as other, other.open(_SHEET_XML) as sheet:
                xml = sheet.read().decode().replace(' tabSelected="1"', "", 1)  # one selected tab, the first
                out.writestr(f"xl/worksheets/sheet{n}.xml", xml)


def _before(closing: str, xml: str, elements: Iterable[str]) -> str:
    """`xml` with `elements` added as the last children of the element that `closing` ends."""
    return xml.replace(closing, "".join(elements) + closing, 1)


def _workbook_xml(xml: str, names: Sequence[str], paths: Sequence[str]) -> str:
    sheets = (f'<sheet name="{name}" sheetId="{n}" r:id="rIdSheet{n}"/>' for n, name in enumerate(names[1:], start=2))
    xml = _before("</sheets>", xml, sheets)
    found = _FILTER.search(xml)
    if found is None:
        return xml
    filters = [_filter_of(path, n, name) for n, (path, name) in enumerate(zip(paths, names, strict=True))]
    return xml.replace(found.group(0), "".join(filters))


def _filter_of(path: str, index: int, name: str) -> str:
    """The autofilter's defined name of sheet `index`, over the range its own sheet XML declares."""
    with zipfile.ZipFile(path) as book, book.open(_SHEET_XML) as sheet:
        head = sheet.read(4096).decode(errors="replace")
    found = re.search(r'<dimension ref="A1:([A-Z]+)(\d+)"', head)
    column, row = found.groups() if found else ("A", "1")
    return (
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{index}" hidden="1">'
        f"'{name}'!$A$1:${column}${row}</definedName>"
    )


def _app_xml(xml: str, names: Sequence[str]) -> str:
    count = len(names)
    xml = re.sub(r"<vt:i4>\d+</vt:i4>", f"<vt:i4>{count}</vt:i4>", xml, count=1)
    titles = "".join(f"<vt:lpstr>{name}</vt:lpstr>" for name in names)
    return re.sub(
        r'<TitlesOfParts><vt:vector size="\d+" baseType="lpstr">.*?</vt:vector></TitlesOfParts>',
        f'<TitlesOfParts><vt:vector size="{count}" baseType="lpstr">{titles}</vt:vector></TitlesOfParts>',
        xml,
        count=1,
    )
