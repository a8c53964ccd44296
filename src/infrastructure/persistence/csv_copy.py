"""A big CSV report written by PostgreSQL itself: `COPY (SELECT ...) TO STDOUT (FORMAT csv)` over the report's
query, in the report's read-only transaction, where COPY's bytes are `CsvEncoder`'s.

The encoder's rules are the definition; the column expressions below are derived from them and checked equal to
them byte for byte, type by type and with the values where the two could differ, by tests/integration/test_csv_copy.py
(which also checks that it covers every type of `COPY_COLUMNS`). Where COPY's CSV and the encoder's differ, and what
makes them the same:

- line ends: COPY ends a row with LF, the encoder with CRLF. Rewritten as the bytes pass (outside quoted fields,
  where a LF is a row's end: the rows are counted there too); a line break inside a value stays as it is in both.
- an empty string: COPY quotes it (`""`) to tell it from NULL; the encoder writes both as an empty field: `NULLIF`.
- booleans: COPY writes `t`/`f`, the encoder `true`/`false`.
- numeric NaN and infinities: the encoder writes an empty field (as NULL): NULL.
- dates: the driver reads `infinity` as 9999-12-31 and `-infinity` as 0001-01-01, which the encoder writes: clamped
  to those. COPY writes a date in the session's DateStyle: copied only when it is ISO (PostgreSQL's default).
- timestamps: the encoder writes ISO 8601 with a `T`, in UTC with `Z` (with a time zone), microseconds only when
  not 0, infinities as the driver reads them: `to_char`, whatever the session's DateStyle and TimeZone.
- a report of one column: COPY writes NULL as an empty line and quotes `\\.`; the encoder writes `""` for an empty
  field. Not copied; nor is a report with `csvFormulaEscape` (the header is the encoder's in any case).
- every other type, not copied: floats (COPY `1` and `1e+15` against `1.0` and `1000000000000000.0`), times,
  intervals, arrays, JSON, binary, enums, domains, ...

Not made the same: a date or timestamp before year 1 or after 9999, which the driver cannot read (a report that holds
one fails on the row path, with INTERNAL_ERROR), is written by COPY as the nearest the row path could write (clamped)
for dates, and with its year without the era for timestamps.

COPY's other rules (a field quoted when it holds `,`, `"`, CR or LF, quotes doubled, UTF-8) are the csv module's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from application.ports import EncodedWrite, RowEncoder
from infrastructure.encoders import CsvEncoder, value_text

# The texts the encoder writes for what the driver reads an infinite date or timestamp as (the earliest or latest
# value Python has; naive, with a time zone or not), and for booleans.
_NEVER = value_text(datetime.min)  # noqa: DTZ901 - the driver's -infinity, naive
_FOREVER = value_text(datetime.max)  # noqa: DTZ901 - the driver's infinity, naive
_FIRST_DAY, _LAST_DAY = value_text(date.min), value_text(date.max)
_AS_IS = "{c}"
_TEXT = "NULLIF({c}, '')"
_UTC_TIMESTAMP = (
    "CASE WHEN isfinite({c}) THEN replace(to_char({c}{utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', ''){z}"
    f" WHEN {{c}} > 'epoch' THEN '{_FOREVER}' WHEN {{c}} < 'epoch' THEN '{_NEVER}' END"
)

COPY_COLUMNS: dict[int, str] = {
    20: _AS_IS,  # int8
    21: _AS_IS,  # int2
    23: _AS_IS,  # int4
    2950: _AS_IS,  # uuid
    25: _TEXT,  # text
    1043: _TEXT,  # varchar
    16: f"CASE WHEN {{c}} THEN '{value_text(True)}' WHEN NOT {{c}} THEN '{value_text(False)}' END",  # bool
    1700: "CASE WHEN {c} > '-Infinity' AND {c} < 'Infinity' THEN {c} END",  # numeric
    # date, in DateStyle ISO
    1082: f"CASE WHEN {{c}} < '{_FIRST_DAY}' THEN '{_FIRST_DAY}' WHEN {{c}} > '{_LAST_DAY}' THEN '{_LAST_DAY}'"
    " ELSE {c} END",
    1114: _UTC_TIMESTAMP.format(c="{c}", utc="", z=""),  # timestamp
    1184: _UTC_TIMESTAMP.format(c="{c}", utc=" AT TIME ZONE 'UTC'", z=" || 'Z'"),  # timestamptz
}
"""The result column types (PostgreSQL's built-in type OIDs) that COPY writes as the encoder does, each with the
expression over a column `{c}` that makes its text the encoder's."""

COPY_MIN_ROWS = 5_000
"""Below this estimate a CSV report takes the row path: as fast for a small report, and one round trip fewer."""

_PLACEHOLDER = re.compile(r"\$(\d+)")


def copy_query(
    encoder: RowEncoder, sql: str, args: Sequence[object], type_oids: Sequence[int], date_style: str
) -> str | None:
    """The query whose COPY (`copy_csv`) writes the rows of `sql` (the report's query as compiled for the driver, `$n`
    its parameters, `args` their values) exactly as `encoder.encode` would, for result columns of these types; None
    where COPY cannot (see the module's docstring).

    COPY takes no parameters: their values are written into the statement as literals. `sql` must hold no `$` of its
    own (the caller checks the report's text), so every `$n` in it is a parameter."""
    if type(encoder) is not CsvEncoder or encoder.escapes_formulas or len(type_oids) < 2:
        return None
    expressions = [COPY_COLUMNS.get(oid) for oid in type_oids]
    if None in expressions or (1082 in type_oids and not date_style.startswith("ISO")):
        return None
    literals = [sql_literal(value) for value in args]
    if None in literals:
        return None
    body = _PLACEHOLDER.sub(lambda m: str(literals[int(m.group(1)) - 1]), sql.strip().rstrip(";"))
    names = [f"c{index}" for index in range(1, len(type_oids) + 1)]
    columns = ", ".join(str(e).format(c=name) for e, name in zip(expressions, names, strict=True))
    # OFFSET 0 keeps the report's query a subquery of its own, run once per row: an expression above that names a
    # column twice would otherwise compute it twice (and call a volatile function twice).
    inner = f"SELECT * FROM (\n{body}\n) AS report OFFSET 0"  # noqa: S608 - the report's own query
    return f"SELECT {columns} FROM ({inner}) AS r({', '.join(names)})"  # noqa: S608 - built from the described columns


def sql_literal(value: object) -> str | None:
    """A parameter's value as an SQL literal, in parentheses (the compiled statement casts it: `$1::VARCHAR`); None
    for a type this does not write. Text is an escape string literal, whatever standard_conforming_strings says."""
    if value is None:
        return "(NULL)"
    if isinstance(value, bool):
        return "(TRUE)" if value else "(FALSE)"
    if isinstance(value, int):
        return f"({value})"
    if isinstance(value, float):
        if math.isfinite(value):
            return f"({value!r})"
        return "('NaN')" if math.isnan(value) else ("('Infinity')" if value > 0 else "('-Infinity')")
    if isinstance(value, str):
        return "(E'" + value.replace("\\", "\\\\").replace("'", "''") + "')"
    if isinstance(value, date):
        return f"('{value.isoformat()}')"
    return None


class CsvRows:
    """COPY's CSV as it comes, a chunk at a time, with the encoder's line ends (CRLF), and the rows that each chunk
    ends. A LF outside quotes ends a row; inside a quoted field it is the value's own (its `"` doubled as `""` toggle
    twice): the state carried from one chunk to the next is whether it ended inside quotes."""

    def __init__(self) -> None:
        self._quoted = False

    def convert(self, chunk: bytes) -> tuple[bytes, int]:
        if not self._quoted and b'"' not in chunk:  # the usual chunk: no quoted field
            return chunk.replace(b"\n", b"\r\n"), chunk.count(b"\n")
        parts = chunk.split(b'"')
        rows = 0
        for index in range(1 if self._quoted else 0, len(parts), 2):
            rows += parts[index].count(b"\n")
            parts[index] = parts[index].replace(b"\n", b"\r\n")
        self._quoted ^= len(parts) % 2 == 0  # an odd number of quotes in this chunk
        return b'"'.join(parts), rows


async def copy_csv(conn: Any, query: str, write: EncodedWrite) -> None:
    """Run `COPY (query) TO STDOUT (FORMAT csv)` (`query` from `copy_query`) on the asyncpg connection `conn`, handing
    each chunk of its output to `write` in the encoder's bytes, with the rows it ends, as it arrives (asyncpg reads no
    more while `write` runs: memory stays flat)."""
    rows = CsvRows()

    async def converted(chunk: bytes) -> None:
        await write(*rows.convert(chunk))

    await conn.copy_from_query(query, output=converted, format="csv")
