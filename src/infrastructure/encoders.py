"""Output formats: rows to CSV (RFC 4180) or to one JSON array of objects, a whole batch per call."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import chain, starmap
from operator import itemgetter
from typing import Any
from uuid import UUID

import msgspec

from application.ports import Row, RowEncoder, RowEncoderFactory

# Types that the csv module already writes the way we want (None as an empty field).
_PLAIN_CSV_TYPES: frozenset[type] = frozenset({str, int, float, type(None)})
# Types that msgspec.to_builtins turns into the strings we want (ISO 8601, base64), in C.
_ISO_TYPES = (datetime, date, time, timedelta, UUID, bytes)
_BUILTIN_CSV_TYPES = _PLAIN_CSV_TYPES | frozenset(_ISO_TYPES)
_DECIMAL_CSV_TYPES: frozenset[type] = frozenset({Decimal, type(None)})
_NON_FINITE_MARKERS = (b"NaN", b"Infinity")


def _json_fallback(value: Any) -> Any:
    return str(value)


_JSON = msgspec.json.Encoder(decimal_format="number", enc_hook=_json_fallback)


def _csv_cell(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")  # exact, and never in exponent notation ("0E-8")
    if isinstance(value, list | tuple | dict):  # array and JSON columns
        return _JSON.encode(value).decode()
    if isinstance(value, _ISO_TYPES):
        return msgspec.to_builtins(value)
    return str(value)


def _csv_column(values: list[object]) -> Sequence[object]:
    """Convert one column of a batch; most columns need no Python work per value at all."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN_CSV_TYPES:
        return values
    if kinds <= _BUILTIN_CSV_TYPES:
        converted: list[object] = msgspec.to_builtins(values)
        return converted
    if kinds <= _DECIMAL_CSV_TYPES:
        return [value if value is None else format(value, "f") for value in values]
    return [_csv_cell(value) for value in values]


class CsvEncoder(RowEncoder):
    """RFC 4180: CRLF line ends, fields quoted only where needed, a header row, UTF-8 without BOM.

    None is an empty field, booleans are `true`/`false`, dates and times ISO 8601 (UTC as `Z`),
    decimals exact in plain notation.
    """

    def __init__(self) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        self._width = 0

    def begin(self, columns: Sequence[str]) -> bytes:
        self._width = len(columns)
        self._writer.writerow(columns)
        return self._take()

    def encode(self, rows: Sequence[Row]) -> bytes:
        if not set(map(type, chain.from_iterable(rows))) <= _PLAIN_CSV_TYPES:
            # Convert column by column: a column of one type is converted in one call where possible.
            columns = [_csv_column(list(map(itemgetter(index), rows))) for index in range(self._width)]
            rows = list(zip(*columns, strict=True))
        self._writer.writerows(rows)
        return self._take()

    def end(self) -> bytes:
        return b""

    def _take(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode()


def _unique_names(columns: Sequence[str]) -> list[str]:
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
    return None if isinstance(value, Decimal) and not value.is_finite() else value


class JsonEncoder(RowEncoder):
    """One JSON array with one object per row, keys = column names, one row per line.

    Decimals are JSON numbers (NaN and infinities, which JSON cannot express, become null), dates and
    times ISO 8601 strings, UUIDs strings; other unknown types are written as their `str()`.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_json_fallback)
        self._row_type: Callable[..., msgspec.Struct] = msgspec.defstruct("Row", [])
        self._rows_written = False

    def begin(self, columns: Sequence[str]) -> bytes:
        names = _unique_names(columns)
        fields = [f"f{index}" for index in range(len(names))]
        # A struct type per report: building one per row is a C call, much cheaper than a dict.
        self._row_type = msgspec.defstruct("Row", fields, rename=dict(zip(fields, names, strict=True)))
        return b"["

    def encode(self, rows: Sequence[Row]) -> bytes:
        if not rows:
            return b""
        lines = self._encode(rows)
        if any(marker in lines for marker in _NON_FINITE_MARKERS):  # rare: re-encode without NaN decimals
            lines = self._encode([[_finite_or_none(value) for value in row] for row in rows])
        separator = b",\n" if self._rows_written else b"\n"
        self._rows_written = True
        # Encoded JSON never holds a raw newline, so each "\n" ends exactly one row object.
        return separator + lines[:-1].replace(b"\n", b",\n")

    def end(self) -> bytes:
        return b"\n]\n" if self._rows_written else b"]\n"

    def _encode(self, rows: Sequence[Row]) -> bytes:
        return self._encoder.encode_lines(list(starmap(self._row_type, rows)))


ENCODERS: dict[str, RowEncoderFactory] = {"csv": CsvEncoder, "json": JsonEncoder}
