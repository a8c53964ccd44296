"""A big CSV report written by PostgreSQL itself (`COPY (query) TO STDOUT (FORMAT csv)`), only where COPY's bytes,
after exact byte transforms, are `CsvEncoder`'s: the encoder stays the one definition of each value's text.

Where COPY's CSV and `CsvEncoder`'s differ, and what is done about it:

- line ends: COPY writes LF, the encoder CRLF. Rewritten (outside quoted fields).
- an empty string: COPY writes `""` to tell it from NULL (an empty field); the encoder writes both as an empty field.
  A block with a quoted field is parsed (csv module) and written again by the encoder itself.
- booleans: COPY writes `t`/`f`; they are the values True/False, written by the encoder's `value_text`.
- numeric NaN and infinities: COPY writes `NaN`, `Infinity`; they are written by `value_text(Decimal(text))`.
- dates: COPY's ISO text is the encoder's for years 1 to 9999; any other (`infinity`, BC, later years, which the
  driver reads differently or not at all) declines the copy part-way (EncodingDeclined): the job then runs again
  with its rows encoded.
- a one-column report: COPY writes a NULL as an empty line and quotes `\\.`, the encoder writes `""` for an empty
  field: not copied. Nor is a report with `csvFormulaEscape`.
- every other type (floats: `1` against `1.0` and exponents; timestamps: a space against `T`, `+00` against `Z`;
  times, intervals, JSON, arrays, binary, enums, domains): not copied.

COPY's other rules (quoting a field with `,`, `"`, CR or LF, doubling quotes, UTF-8) are the csv module's.
tests/integration/test_csv_copy.py runs both paths over the same rows of every type of `COPY_RULES`.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any

from application.errors import EncodingDeclined
from application.ports import EncodedRows, RowEncoder
from infrastructure.encoders import CsvEncoder, value_text
from infrastructure.persistence.query_guards import query_errors, streamed_too_long

Fields = list[str]
ColumnRule = Callable[[Fields], Fields]
"""The fields of one column of a block of COPY's rows, as the encoder writes them (or EncodingDeclined)."""

BLOCK_BYTES = 64 << 10
"""How much of COPY's output is rewritten at once (asyncpg hands it over in chunks of whole rows, often small)."""
_QUEUED_BLOCKS = 4
Ready = asyncio.Queue[EncodedRows | Exception | None]
"""COPY's rewritten blocks on their way to the consumer; then None (the end) or the error that ended it."""
_BOOLEANS = {"t": value_text(True), "f": value_text(False), "": value_text(None)}
_NON_FINITE = {text: value_text(Decimal(text)) for text in ("NaN", "Infinity", "-Infinity")}


def _booleans(fields: Fields) -> Fields:
    return list(map(_BOOLEANS.__getitem__, fields))


def _numerics(fields: Fields) -> Fields:
    """Finite numerics are written alike (plain notation, the value's own scale); NaN and the infinities are not."""
    joined = "".join(fields)
    if "N" in joined or "I" in joined:
        return [_NON_FINITE.get(field, field) for field in fields]
    return fields


def _dates(fields: Fields) -> Fields:
    text = "".join(fields)  # each date is YYYY-MM-DD: 10 characters, dashes at 4 and 7
    if set(map(len, fields)) <= {0, 10} and not text[4::10].strip("-") and not text[7::10].strip("-"):
        return fields
    raise EncodingDeclined("a date that is not written as YYYY-MM-DD (infinity, BC, or after 9999)")


def _as_written(fields: Fields) -> Fields:
    return fields


COPY_RULES: dict[int, ColumnRule] = {
    16: _booleans,  # bool
    20: _as_written,  # int8
    21: _as_written,  # int2
    23: _as_written,  # int4
    25: _as_written,  # text
    1042: _as_written,  # bpchar
    1043: _as_written,  # varchar
    1082: _dates,  # date
    1700: _numerics,  # numeric
    2950: _as_written,  # uuid
}
"""The result column types (PostgreSQL's built-in type OIDs) whose COPY text is the encoder's, with what it takes."""


def csv_copy(encoder: RowEncoder, type_oids: Sequence[int]) -> CsvCopy | None:
    """The rewriting of COPY's output into `encoder`'s bytes, for a query whose result columns have these types;
    None where COPY cannot give them."""
    if type(encoder) is not CsvEncoder or encoder.escapes_formulas or len(type_oids) < 2:
        return None
    rules = [COPY_RULES.get(oid) for oid in type_oids]
    return CsvCopy(encoder, [rule for rule in rules if rule is not None]) if None not in rules else None


class CsvCopy:
    """COPY's CSV rows, as they come, in `CsvEncoder`'s bytes, a block at a time.

    A block without a quote (the usual one) is rewritten as a whole: its fields split at each `,` and line end (no
    field holds either), the columns that need it rewritten, joined again with CRLF. A block with a quoted field is
    parsed and written by the encoder itself.
    """

    def __init__(self, encoder: CsvEncoder, rules: Sequence[ColumnRule]) -> None:
        self._encoder = encoder
        self._stride = len(rules) + 1  # the fields of a row and its line end
        self._rules = [(index, rule) for index, rule in enumerate(rules) if rule is not _as_written]
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def feed(self, chunk: bytes) -> EncodedRows | None:
        """The rows of the block that `chunk` completes, or None while the block is still filling."""
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes < BLOCK_BYTES:
            return None
        data = b"".join(self._pending)
        if not (data.endswith(b"\n") and data.count(b'"') % 2 == 0):  # ends inside a row: wait for the rest
            self._pending = [data]
            return None
        return self.finish()

    def finish(self) -> EncodedRows | None:
        """The rows still held (all of them, at the end of COPY's output)."""
        if not self._pending:
            return None
        data = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise EncodingDeclined("COPY wrote text that is not UTF-8") from None
        if '"' in text or not text.endswith("\n"):
            return self._parsed(text)
        return self._rewritten(text)

    def _rewritten(self, text: str) -> EncodedRows:
        rows = text.count("\n")
        if not self._rules:
            return EncodedRows(text.replace("\n", "\r\n").encode(), rows)
        fields = text[:-1].replace("\n", ",\n,").split(",")
        if len(fields) != rows * self._stride - 1:
            raise EncodingDeclined("COPY wrote rows of another width than the query's")
        for index, rule in self._rules:
            fields[index :: self._stride] = rule(fields[index :: self._stride])
        return EncodedRows((",".join(fields).replace(",\n,", "\r\n") + "\r\n").encode(), rows)

    def _parsed(self, text: str) -> EncodedRows:
        try:
            rows: Sequence[Sequence[str]] = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:  # a field longer than the csv module reads (128 KiB)
            raise EncodingDeclined(f"COPY's CSV could not be read back: {exc}") from None
        if self._rules and rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            for index, rule in self._rules:
                columns[index] = rule(columns[index])
            rows = list(zip(*columns, strict=True))
        return EncodedRows(self._encoder.encode(rows), len(rows))


async def copied(
    conn: Any, sql: str, args: Sequence[object], rewrite: CsvCopy, deadline: float
) -> AsyncIterator[EncodedRows]:
    """The rows of `sql` through COPY on the asyncpg connection `conn`, in the transaction it is in (read-only, with
    its statement timeout), rewritten by `rewrite`; a few blocks are read ahead while the consumer writes.

    Raises EncodingDeclined when a value is written differently, or when PostgreSQL refuses the query inside COPY
    (a syntax or access error: the same query already ran as a cursor); otherwise query_errors' errors."""
    ready: Ready = asyncio.Queue(_QUEUED_BLOCKS)

    async def output(chunk: bytes) -> None:
        block = rewrite.feed(chunk)
        if block is not None:
            await ready.put(block)

    async def produce() -> None:
        try:
            await conn.execute("SET LOCAL DateStyle = ISO")  # the encoder's date text, whatever the server's default
            await conn.copy_from_query(copy_query(sql), *args, output=output, format="csv")
            if (tail := rewrite.finish()) is not None:
                await ready.put(tail)
            await ready.put(None)
        except Exception as exc:
            await ready.put(exc)

    task = asyncio.ensure_future(produce())
    try:
        while (item := await _next(ready, deadline)) is not None:
            if isinstance(item, Exception):
                with query_errors():
                    raise _refused_as_copy(item)
            if item.rows:
                yield item
    finally:
        _ = task.cancel()
        _ = await asyncio.gather(task, return_exceptions=True)


def copy_query(sql: str) -> str:
    """The query as COPY's parenthesised query: no final `;`, and a line end so that a final comment ends there."""
    return sql.rstrip().rstrip(";") + "\n"


async def _next(ready: Ready, deadline: float) -> EncodedRows | Exception | None:
    try:
        async with asyncio.timeout_at(deadline):
            return await ready.get()
    except TimeoutError:
        raise streamed_too_long() from None


def _refused_as_copy(exc: Exception) -> Exception:
    code = getattr(exc, "sqlstate", None)
    if isinstance(code, str) and code.startswith("42"):  # syntax error or access rule violation
        return EncodingDeclined(f"PostgreSQL refused the query inside COPY (SQLSTATE {code})")
    return exc
