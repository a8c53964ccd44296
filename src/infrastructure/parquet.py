"""Rows to Apache Parquet, streamed one row group at a time, for the optional `reportgen[parquet]` extra.

Parquet columns are typed, query results are not always (SQLite is dynamically typed; a `UNION` may mix types).
Each column's type is therefore read from the values of the first row group (`ParquetEncoder`'s docstring has the
rules), and every later value must fit it: one that does not fails the job with a message that names the column and
asks for a cast, since the file's schema is already written and no reader could make sense of a column that changes
type half way.

Longer than most modules, on purpose: the type rules and the writer that enforces them read best side by side.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any
from uuid import UUID

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from application.errors import ReportOutputFailed
from application.ports import RenderContext, Row, RowEncoder
from domain.jobs import ErrorCode
from infrastructure.encoders import unique_names, value_text

COMPRESSION = "zstd"
"""zstd rather than snappy: files noticeably smaller (report files are downloaded, often more than once) for about
the same CPU at its default level, and every current Parquet reader (Arrow, DuckDB, Polars, Spark 3.2+) reads it."""

DICTIONARY_SHARE = 0.5
"""Text columns whose first row group repeats values (fewer distinct values than this share of its rows) are
dictionary-encoded; other columns are not: building a dictionary for unique values costs CPU and, under zstd, makes
the file larger (bench/README.md has the figures)."""
_MAX_DIGITS = 38  # what decimal128 holds
_NONE_TYPE = type(None)
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)

Values = Sequence[Any]
"""The values of one column in one row group, None for NULL."""


def _same(values: Values) -> Values:
    return values


def _text(value: object) -> str | None:
    """A value of a column of mixed (or unknown) types as text: as CSV writes it, NaN and infinities as NULL."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    return value_text(value)


def _finite_decimals(values: Values) -> Values:
    return [value if value is None or value.is_finite() else None for value in values]


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one column is stored: its Arrow type, the Python types its values may have, and how they become what
    `pa.array` takes. `label` names it in messages, in SQL's words."""

    label: str
    arrow: Any
    accepts: frozenset[type] | None  # None: any value (as its text)
    convert: Callable[[Values], Values] = _same
    aware: bool | None = None  # datetimes and times: must have a time zone (True) or must not (False)
    repair: Callable[[Values], Values] | None = None  # a second try when Arrow refuses the converted values

    def misfit(self, values: Values) -> int | None:
        """The index of the first value that this column cannot hold as its type, if any."""
        accepts = self.accepts
        if accepts is None:
            return None
        if not set(map(type, values)) <= accepts:
            return next(index for index, value in enumerate(values) if type(value) not in accepts)
        if self.aware is None:
            return None
        aware = self.aware
        return next(
            (i for i, value in enumerate(values) if value is not None and (value.tzinfo is None) is aware), None
        )


def _kind(label: str, arrow: Any, *types: type, **options: Any) -> _Kind:
    return _Kind(label, arrow, frozenset((_NONE_TYPE, *types)), **options)


_TEXT = _Kind("text", pa.string(), None, lambda values: list(map(_text, values)))
_FLOAT = _kind("double precision", pa.float64(), float, int)
_JSON_KIND = _kind("json", pa.string(), list, tuple, dict, convert=lambda values: list(map(_text, values)))
_TIMESTAMPTZ = _kind("timestamp with time zone", pa.timestamp("us", tz="UTC"), datetime, aware=True)
_TIMESTAMP = _kind("timestamp", pa.timestamp("us"), datetime, aware=False)
_BY_TYPE = {
    bool: _kind("boolean", pa.bool_(), bool),
    int: _kind("bigint", pa.int64(), int),
    float: _FLOAT,
    str: _kind("text", pa.string(), str),
    bytes: _kind("bytea", pa.binary(), bytes),
    datetime: _TIMESTAMP,
    date: _kind("date", pa.date32(), date),
    time: _kind("time", pa.time64("us"), time, aware=False),
    timedelta: _kind("interval", pa.duration("us"), timedelta),
    UUID: _kind("uuid", pa.string(), UUID, convert=lambda values: [None if v is None else str(v) for v in values]),
    list: _JSON_KIND,
    tuple: _JSON_KIND,
    dict: _JSON_KIND,
}
_KNOWN_TYPES = frozenset((*_BY_TYPE, Decimal))


def _decimal_kind(values: Values) -> _Kind:
    """numeric(38, s) with s the largest scale among the values; text if some value needs more than 38 digits."""
    precision, scale = _one_exponent_digits(values) or _inferred_digits(values)
    if precision > _MAX_DIGITS:
        return _TEXT
    arrow = pa.decimal128(_MAX_DIGITS, scale)
    return _kind(f"numeric({_MAX_DIGITS},{scale})", arrow, Decimal, repair=_finite_decimals)


def _inferred_digits(values: Values) -> tuple[int, int]:
    """The precision and scale that the values need, found by Arrow's own inference (in C, but it takes each value
    apart into a tuple; bench/README.md has what that costs)."""
    try:
        needed = pa.array(values).type
    except _CONVERSION_ERRORS:  # NaN or infinities among them
        needed = pa.array(_finite_decimals(values)).type
    if not pa.types.is_decimal(needed):  # only NaN and infinities: the null type
        return 1, 0
    return needed.precision, needed.scale


def _one_exponent_digits(values: Values) -> tuple[int, int] | None:
    """What `_inferred_digits` finds, when every value has the same exponent (finite values of one scale, as a
    numeric(p, s) column or `round(x, s)` gives); None otherwise. Cheaper: a comparison and an `adjusted()` a
    value, in C.

    With one exponent `e`, the scale is `max(-e, 0)` and a value's digits before the point are
    `max(adjusted() + 1, 0)`: the precision is the most of those plus the scale, as Arrow counts it
    (`test_parquet_encoder` checks that both agree)."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    first = present[0]
    if not first.is_finite() or not all(map(first.same_quantum, present)):  # NaN and infinities never match
        return None
    scale = max(-int(first.as_tuple().exponent), 0)
    return max(max(map(Decimal.adjusted, present)) + 1, 0) + scale, scale


def _column_kind(values: Values) -> _Kind:
    """The type of a column, read from its values in the first row group."""
    types = set(map(type, values)) - {_NONE_TYPE}
    if len(types) != 1:
        if types == {int, float}:
            return _FLOAT
        return _JSON_KIND if types and types <= {list, tuple, dict} else _TEXT  # no values at all: text
    (value_type,) = types
    kind = _one_type_kind(next((t for t in value_type.__mro__ if t in _KNOWN_TYPES), object), values)
    if kind.accepts is None or value_type in kind.accepts:
        return kind
    return replace(kind, accepts=kind.accepts | {value_type})  # a subclass: asyncpg's UUID, a str enum


def _one_type_kind(value_type: type, values: Values) -> _Kind:
    if value_type is Decimal:
        return _decimal_kind(values)
    if value_type is datetime or value_type is time:
        zones = {value.tzinfo is None for value in values if value is not None}
        if zones == {False}:
            return _TIMESTAMPTZ if value_type is datetime else _TEXT  # time with time zone: its ISO text
        return _BY_TYPE[value_type] if zones == {True} else _TEXT
    return _BY_TYPE.get(value_type, _TEXT)


class _Drain:
    """The file the Parquet writer writes to: it keeps the bytes only until `take` hands them on."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ParquetEncoder(RowEncoder):
    """One Parquet file, written a row group of `row_group_rows` rows at a time: `encode` returns the bytes of each
    row group as soon as it is full, so memory holds about one row group, whatever the size of the result. Like
    `encode`, `end` does its work (the last row group and the footer) on the event loop: one row group at most.

    Column types come from the values of the first row group (all rows, when fewer): booleans, 64-bit integers,
    floats (integers among floats become floats), decimals (numeric(38, s), s the largest scale seen; text when 38
    digits are not enough), strings, binary, timestamps (UTC when the values have a time zone, naive when none has),
    dates, times, intervals (durations in microseconds), UUIDs (text) and arrays or JSON documents (compact JSON
    text). A column of mixed types, of times with a time zone or of an unknown type holds each value's text, and so
    does a column that is NULL all through the first row group: its later values, whatever their type, are written
    as text. Every other column keeps its type: a later value that does not fit raises ReportOutputFailed.

    Float NaN and infinities are kept (Parquet stores them), NaN and infinite decimals are NULL (decimal128 cannot
    hold them), as they are in the other formats. Repeated column names get a suffix (`n`, `n_2`), since readers
    address columns by name. A query without columns raises ReportOutputFailed: a Parquet file needs at least one.
    The title and generation time are stored in the file's key-value metadata.
    """

    def __init__(self, context: RenderContext | None = None, *, row_group_rows: int = 65_536) -> None:
        if row_group_rows < 1:
            raise ValueError("row_group_rows must be at least 1")
        self._row_group_rows = row_group_rows
        self._metadata = (
            {}
            if context is None
            else {"reportgen.title": context.title, "reportgen.generated_at": context.generated_at.isoformat()}
        )
        self._sink = _Drain()
        self._names: list[str] = []
        self._pending: list[Row] = []
        self._rows_written = 0
        self._kinds: list[_Kind] = []
        self._schema: Any = None
        self._writer: Any = None

    def begin(self, columns: Sequence[str]) -> bytes:
        if not columns:
            raise ReportOutputFailed(
                ErrorCode.OUTPUT_FAILED, "The query returns no columns; a Parquet file needs at least one."
            )
        self._names = unique_names(columns)
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        self._pending.extend(rows)
        size = self._row_group_rows
        while len(self._pending) >= size:
            group, self._pending = self._pending[:size], self._pending[size:]
            self._write(group)
        return self._sink.take()

    async def end(self) -> AsyncIterator[bytes]:
        if self._pending or self._writer is None:
            group, self._pending = self._pending, []
            self._write(group)
        self._writer.close()
        self._writer = None
        yield self._sink.take()

    def close(self) -> None:
        writer, self._writer, self._pending = self._writer, None, []
        if writer is not None:  # end() did not run: the footer goes nowhere, and an error then is not the story
            with contextlib.suppress(pa.ArrowException, OSError):
                writer.close()
        self._sink.take()

    def _write(self, rows: Sequence[Row]) -> None:
        """Write `rows` as one row group (the first one sets the column types and opens the file)."""
        columns: list[Values] = [list(map(itemgetter(index), rows)) for index in range(len(self._names))]
        if self._writer is None:
            self._open([_column_kind(values) for values in columns], columns)
        if rows:
            arrays = [self._array(index, values) for index, values in enumerate(columns)]
            table = pa.Table.from_arrays(arrays, schema=self._schema)
            self._writer.write_table(table, row_group_size=len(rows))
            self._rows_written += len(rows)

    def _open(self, kinds: list[_Kind], first: list[Values]) -> None:
        self._kinds = kinds
        fields = [pa.field(name, kind.arrow) for name, kind in zip(self._names, kinds, strict=True)]
        self._schema = pa.schema(fields, metadata=self._metadata)
        repeated = [
            name
            for name, kind, values in zip(self._names, kinds, first, strict=True)
            if kind.arrow == pa.string() and len(set(kind.convert(values))) < DICTIONARY_SHARE * max(len(values), 1)
        ]
        self._writer = pq.ParquetWriter(
            self._sink, self._schema, compression=COMPRESSION, use_dictionary=repeated or False
        )

    def _array(self, index: int, values: Values) -> Any:
        """One column of a row group as an Arrow array of its column's type, or ReportOutputFailed."""
        kind = self._kinds[index]
        misfit = kind.misfit(values)
        if misfit is not None:
            raise self._type_changed(index, misfit, _column_kind(values[misfit : misfit + 1]))
        try:
            return pa.array(kind.convert(values), type=kind.arrow)
        except _CONVERSION_ERRORS:
            if kind.repair is None:
                raise self._does_not_fit(index, values) from None
        try:
            return pa.array(kind.repair(values), type=kind.arrow)
        except _CONVERSION_ERRORS:
            raise self._does_not_fit(index, values) from None

    def _type_changed(self, index: int, misfit: int, found: _Kind) -> ReportOutputFailed:
        row = self._rows_written + misfit + 1
        found_label = "numeric" if found.label.startswith("numeric") else found.label
        return ReportOutputFailed(
            ErrorCode.OUTPUT_FAILED,
            f"Column '{self._names[index]}' holds values of more than one type ({self._kinds[index].label} until "
            f"row {row - 1:,}, then {found_label} at row {row:,}); cast it in the query to one type to write Parquet.",
        )

    def _does_not_fit(self, index: int, values: Values) -> ReportOutputFailed:
        """The error for a value of the right Python type that the column's Arrow type cannot hold (an integer
        beyond 64 bits, a decimal with more digits or a larger scale than the first rows had)."""
        kind = self._kinds[index]
        misfit = next((i for i, value in enumerate(values) if not _fits(kind, value)), 0)
        return ReportOutputFailed(
            ErrorCode.OUTPUT_FAILED,
            f"Column '{self._names[index]}' holds a value at row {self._rows_written + misfit + 1:,} that its type, "
            f"{kind.label} (set by its first rows), cannot hold; cast it in the query to a type that holds every "
            "value to write Parquet.",
        )


def _fits(kind: _Kind, value: object) -> bool:
    convert = kind.repair or kind.convert
    try:
        pa.array(convert([value]), type=kind.arrow)
    except _CONVERSION_ERRORS:
        return False
    return True
