"""The streamed output formats: rows to CSV (RFC 4180), to one JSON array of objects, or to NDJSON, a whole batch per
call."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import chain, repeat, starmap
from operator import itemgetter
from typing import IO, Any
from uuid import UUID

import msgspec

from application.ports import RenderContext, Row, RowEncoder

# Types that msgspec.to_builtins turns into the strings we want (ISO 8601, base64), in C.
_ISO_TYPES = (datetime, date, time, timedelta, UUID, bytes)
# What makes the csv module quote a field with our dialect (QUOTE_MINIMAL, `,`, `"`, CRLF line ends).
_QUOTE_TRIGGERS = (",", '"', "\r", "\n")
_NON_FINITE_MARKERS = (b"NaN", b"Infinity")
# The text of a float or Decimal holds an "n" or "N" only when the value is NaN or infinite ("nan", "-inf", "NaN",
# "sNaN", "-Infinity"); an exponent is written with "e"/"E".
_NON_FINITE_LETTERS = ("n", "N")
_BOOL_TEXT = {True: "true", False: "false"}
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet takes as the start of a formula in a text value (OWASP's list for CSV injection)."""


def formula_escaped(text: str) -> str:
    """`text` with a `'` before it if a spreadsheet would run it as a formula: the cell then shows the text."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _json_fallback(value: Any) -> Any:
    return str(value)


_JSON = msgspec.json.Encoder(decimal_format="number", enc_hook=_json_fallback)


FILE_CHUNK_BYTES = 1 << 20
"""How much of a file format's finished file `file_chunks` reads at a time (and XLSX copies when it merges)."""


async def file_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    """The rest of `file`, read in chunks off the event loop: how a file format's `end` hands its file over."""
    while chunk := await asyncio.to_thread(file.read, FILE_CHUNK_BYTES):
        yield chunk


def value_text(value: object) -> str:
    """The text of one value: the field CSV writes (the reference for its column fast paths), and what every other
    format writes for a value it holds as text (an XLSX cell, a PDF table cell, a Parquet column of mixed types).

    NULL is empty, booleans `true`/`false`, decimals exact in plain notation, NaN and infinities empty (NULL, as in
    JSON), dates, times and intervals ISO 8601 (UTC as `Z`), UUIDs their text, binary values base64, arrays and JSON
    documents compact JSON (NaN inside as null)."""
    if isinstance(value, bool):
        return _BOOL_TEXT[value]
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else ""  # NaN and infinities are NULL, as in JSON
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else ""  # exact, never in exponent notation ("0E-8")
    if isinstance(value, list | tuple | dict):  # array and JSON columns
        return _JSON.encode(_finite_or_none(value)).decode()
    if isinstance(value, _ISO_TYPES):
        return str(msgspec.to_builtins(value))
    return str(value)


def _decimal_texts(values: Sequence[Any]) -> Sequence[str]:
    """`format(value, "f")` of each value: that is `str(value)` (converted in C) unless `str` used an exponent."""
    texts: list[str] = msgspec.to_builtins(values)
    joined = "".join(texts)
    if any(letter in joined for letter in _NON_FINITE_LETTERS):
        return list(map(value_text, values))
    if "E" in joined or "e" in joined:
        return list(map(format, values, repeat("f")))
    return texts


def _float_texts(values: Sequence[Any]) -> Sequence[str]:
    texts = list(map(str, values))
    if any(letter in "".join(texts) for letter in _NON_FINITE_LETTERS):
        return list(map(value_text, values))
    return texts


def _int_texts(values: Sequence[Any]) -> Sequence[str]:
    """`str(value)` of each value, all converted in one C call (msgspec writes integers exactly as `str` does)."""
    return _JSON.encode(values)[1:-1].decode().split(",") if values else []


def _same(values: Sequence[Any]) -> Sequence[str]:
    return values


# A column whose values all have one of these types is converted in one call, without Python work per value.
_COLUMN_TEXTS: dict[type, Callable[[Sequence[Any]], Sequence[str]]] = {
    str: _same,
    int: _int_texts,
    float: _float_texts,
    bool: lambda values: list(map(_BOOL_TEXT.__getitem__, values)),
    Decimal: _decimal_texts,
    **dict.fromkeys(_ISO_TYPES, msgspec.to_builtins),
}
# Types whose text never holds a character that the csv module would quote.
_UNQUOTED_TYPES = frozenset({type(None), int, float, bool, Decimal, *_ISO_TYPES})


def _csv_texts(values: Sequence[Any]) -> tuple[Sequence[str], bool]:
    """The text of each value of one column of a batch (None, SQL NULL, is an empty field), and whether any of
    them might need quoting."""
    kinds = set(map(type, values))
    unquoted = kinds <= _UNQUOTED_TYPES
    nullable = type(None) in kinds
    kinds.discard(type(None))
    convert = _COLUMN_TEXTS.get(kinds.pop()) if len(kinds) == 1 else None
    if convert is None:  # mixed types, unusual types, or only NULLs: value by value
        return [value_text(value) for value in values], unquoted
    if not nullable:
        return convert(values), unquoted
    texts = iter(convert([value for value in values if value is not None]))
    return ["" if value is None else next(texts) for value in values], unquoted


class CsvEncoder(RowEncoder):
    """RFC 4180: CRLF line ends, fields quoted only where needed, a header row, UTF-8 without BOM.

    None is an empty field, booleans are `true`/`false`, dates and times ISO 8601 (UTC as `Z`),
    decimals exact in plain notation. NaN and infinities are NULL (an empty field; null inside arrays), as in JSON.
    With the report's `csvFormulaEscape`, a text value (never a number) that starts with `=`, `+`, `-`, `@`, a tab
    or a carriage return gets a `'` before it, and so does such a column name.
    """

    def __init__(self, context: RenderContext | None = None) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        self._width = 0
        self._escape = context is not None and context.csv_formula_escape

    @property
    def escapes_formulas(self) -> bool:
        """Whether the report's `csvFormulaEscape` is on."""
        return self._escape

    def begin(self, columns: Sequence[str]) -> bytes:
        self._width = len(columns)
        self._writer.writerow(list(map(formula_escaped, columns)) if self._escape else columns)
        return self._take()

    def encode(self, rows: Sequence[Row]) -> bytes:
        if not rows:
            return b""
        # Column by column: a column of one type is converted in one call, and the whole batch joined at once.
        values = [list(map(itemgetter(index), rows)) for index in range(self._width)]
        converted = [_csv_texts(column) for column in values]
        if self._escape:
            converted = [
                (_escape_text_values(v, texts), unquoted)
                for v, (texts, unquoted) in zip(values, converted, strict=True)
            ]
        columns = [texts for texts, _ in converted]
        if self._joinable(columns, [texts for texts, unquoted in converted if not unquoted]):
            return ("\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n").encode()
        # Quoting, a row of one empty field, rows without columns (one empty line each): the csv module's rules.
        self._writer.writerows(zip(*columns, strict=True) if columns else rows)
        return self._take()

    async def end(self) -> AsyncIterator[bytes]:
        yield b""

    def _joinable(self, columns: Sequence[Sequence[str]], free_text: Sequence[Sequence[str]]) -> bool:
        """Whether joining with `,` and CRLF gives what the csv module writes: no field (of the columns that may hold
        any text) has a character that it quotes, and no row is one empty field (which it writes as `""`)."""
        if self._width == 0 or (self._width == 1 and "" in columns[0]):
            return False
        text = "".join(chain.from_iterable(free_text))
        return not any(trigger in text for trigger in _QUOTE_TRIGGERS)

    def _take(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode()


def _escape_text_values(values: Sequence[Any], texts: Sequence[str]) -> Sequence[str]:
    """The texts of one column, those of text values (not numbers, not dates) escaped by `formula_escaped`."""
    if not any(isinstance(value, str) for value in values):
        return texts
    return [
        formula_escaped(text) if isinstance(value, str) else text for value, text in zip(values, texts, strict=True)
    ]


def unique_names(columns: Sequence[str]) -> list[str]:
    """JSON object keys must be unique: a repeated column name gets a suffix (`n`, `n_2`, `n_3`)."""
    names: list[str] = []
    for column in columns:
        name, suffix = column, 1
        while name in names:
            suffix += 1
            name = f"{column}_{suffix}"
        names.append(name)
    return names


def _finite_or_none(value: object) -> object:
    """The value with every NaN or infinite Decimal in it (in arrays and JSON documents too) replaced by None."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    return value


class JsonEncoder(RowEncoder):
    """One JSON array with one object per row, keys = column names, one row per line.

    Decimals are JSON numbers (NaN and infinities, which JSON cannot express, become null), dates and
    times ISO 8601 strings, UUIDs strings; other unknown types are written as their `str()`.
    """

    def __init__(self, context: RenderContext | None = None) -> None:
        self._encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_json_fallback)
        self._row_type: Callable[..., msgspec.Struct] = msgspec.defstruct("Row", [])
        self._rows_written = False

    def begin(self, columns: Sequence[str]) -> bytes:
        names = unique_names(columns)
        fields = [f"f{index}" for index in range(len(names))]
        # A struct type per report: building one per row is a C call, much cheaper than a dict. gc=False: a row
        # struct cannot be part of a reference cycle, and a million tracked objects would make the collector
        # run (and walk the whole heap) again and again.
        self._row_type = msgspec.defstruct("Row", fields, rename=dict(zip(fields, names, strict=True)), gc=False)
        return b"["

    def encode(self, rows: Sequence[Row]) -> bytes:
        if not rows:
            return b""
        lines = self._encode_finite(rows)
        separator = b",\n" if self._rows_written else b"\n"
        self._rows_written = True
        # Encoded JSON never holds a raw newline, so each "\n" ends exactly one row object.
        return separator + lines[:-1].replace(b"\n", b",\n")

    async def end(self) -> AsyncIterator[bytes]:
        yield b"\n]\n" if self._rows_written else b"]\n"

    def _encode_finite(self, rows: Sequence[Row]) -> bytes:
        """The rows with NaN and infinite decimals as null. msgspec up to 0.22 writes them as `NaN`/`Infinity`
        (not JSON), 0.23 refuses them: either way the rare batch that holds one is encoded again without them."""
        try:
            lines = self._encode(rows)
            if not any(marker in lines for marker in _NON_FINITE_MARKERS):
                return lines
        except ValueError:
            pass
        return self._encode([[_finite_or_none(value) for value in row] for row in rows])

    def _encode(self, rows: Sequence[Row]) -> bytes:
        return self._encoder.encode_lines(list(starmap(self._row_type, rows)))


class NdjsonEncoder(JsonEncoder):
    """One JSON object per line and nothing around them (NDJSON, also called JSON Lines), with `JsonEncoder`'s value
    rules; a report without rows is an empty file."""

    def begin(self, columns: Sequence[str]) -> bytes:
        super().begin(columns)
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        return self._encode_finite(rows) if rows else b""

    async def end(self) -> AsyncIterator[bytes]:
        yield b""
