import asyncio
import csv
import io
import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from application.ports import RenderContext, Row, RowEncoder
from infrastructure.encoders import CsvEncoder, JsonEncoder, NdjsonEncoder


def encode_all(encoder: RowEncoder, columns: Sequence[str], *batches: Sequence[Row]) -> bytes:
    data = encoder.begin(columns) + b"".join(encoder.encode(batch) for batch in batches)
    return data + asyncio.run(end_bytes(encoder))


async def end_bytes(encoder: RowEncoder) -> bytes:
    return b"".join([chunk async for chunk in encoder.end()])


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_has_a_header_row_and_crlf_line_ends() -> None:
    data = encode_all(CsvEncoder(), ["id", "name"], [(1, "a"), (2, "b")])

    assert data == b"id,name\r\n1,a\r\n2,b\r\n"


def test_csv_quotes_commas_quotes_and_newlines_and_reads_back_unchanged() -> None:
    values = ["a,b", 'say "hi"', "two\nlines", "cr\ronly", " padded ", "plain"]

    data = encode_all(CsvEncoder(), ["v"], [(v,) for v in values])

    assert b'"a,b"' in data
    assert b'"say ""hi"""' in data
    assert b'"two\nlines"' in data
    assert parse_csv(data) == [["v"], *([v] for v in values)]


def test_csv_writes_none_as_an_empty_field_and_booleans_in_lower_case() -> None:
    data = encode_all(CsvEncoder(), ["a", "b", "c"], [(None, True, False), ("x", None, True)])

    assert data == b"a,b,c\r\n,true,false\r\nx,,true\r\n"


def test_csv_writes_dates_and_times_in_iso_8601() -> None:
    row = (
        date(2026, 1, 2),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 600000),  # noqa: DTZ001 - SQL timestamps without time zone are naive
        time(7, 8, 9),
        None,
    )

    [_, line] = parse_csv(encode_all(CsvEncoder(), ["d", "dt", "naive", "t", "none"], [row]))

    assert line == ["2026-01-02", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.600000", "07:08:09", ""]


def test_csv_writes_decimals_exactly_and_never_in_exponent_notation() -> None:
    rows = [(Decimal("0.00000000"),), (Decimal("1E+2"),), (Decimal("-12345678901234567890.123456789"),), (None,)]

    lines = parse_csv(encode_all(CsvEncoder(), ["amount"], rows))

    assert lines[1:] == [["0.00000000"], ["100"], ["-12345678901234567890.123456789"], [""]]


def test_csv_converts_columns_of_mixed_types_value_by_value() -> None:
    rows = [(1, True), (Decimal("1.5"), "x"), (date(2026, 1, 1), None), (UUID(int=1), timedelta(days=1))]

    lines = parse_csv(encode_all(CsvEncoder(), ["a", "b"], rows))

    assert lines[1:] == [
        ["1", "true"],
        ["1.5", "x"],
        ["2026-01-01", ""],
        ["00000000-0000-0000-0000-000000000001", "P1D"],
    ]


def test_csv_quotes_a_row_of_one_empty_field_so_that_it_is_not_a_blank_line() -> None:
    data = encode_all(CsvEncoder(), ["v"], [("",), (None,), ("x",)])

    assert data == b'v\r\n""\r\n""\r\nx\r\n'


def test_csv_writes_an_empty_line_per_row_when_there_are_no_columns() -> None:
    assert encode_all(CsvEncoder(), [], [(), ()], [()]) == b"\r\n" * 4


def test_csv_writes_the_columns_of_a_typical_report_exactly() -> None:
    rows = [
        (1, 1, Decimal("0.37"), "c4ca4238a0b923820dcc509a6f75849b", date(2024, 1, 2), False),
        (-2, None, Decimal("-1E+3"), None, None, None),
        (2**70, 0, Decimal("0E-8"), "", date(2024, 12, 31), True),
    ]

    data = encode_all(CsvEncoder(), ["id", "bucket", "amount", "label", "day", "flag"], rows[:1], rows[1:])

    assert data == (
        b"id,bucket,amount,label,day,flag\r\n"
        b"1,1,0.37,c4ca4238a0b923820dcc509a6f75849b,2024-01-02,false\r\n"
        b"-2,,-1000,,,\r\n"
        b"1180591620717411303424,0,0.00000000,,2024-12-31,true\r\n"
    )


def reference_csv(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """The CSV format spelled out value by value, with the csv module doing all the quoting."""

    def text(value: object) -> object:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, list):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(value, date | UUID):
            return str(value)
        return value  # str, int, float and None as the csv module writes them

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([text(value) for value in row] for row in rows)
    return out.getvalue().encode()


def random_column(rnd: random.Random) -> Callable[[], object]:
    """Values like a column of a report: of one type (sometimes with NULLs) or of mixed types."""
    kinds: list[Callable[[], object]] = [
        lambda: rnd.randint(-(2**80), 2**80),
        lambda: rnd.uniform(-1e20, 1e20),
        lambda: "".join(rnd.choices('ab ,"\r\n;é✓', k=rnd.randint(0, 5))),
        lambda: rnd.random() < 0.5,
        lambda: Decimal(rnd.randint(-(10**12), 10**12)).scaleb(rnd.randint(-12, 4)),
        lambda: date(2024, 1, 1) + timedelta(days=rnd.randint(0, 3000)),
        lambda: UUID(int=rnd.getrandbits(128)),
        lambda: [rnd.randint(0, 9), "x,y"],
    ]
    if rnd.random() < 0.3:
        return lambda: None if rnd.random() < 0.1 else rnd.choice(kinds)()
    kind, null_rate = rnd.choice(kinds), rnd.choice([0, 0, 0.2, 1])
    return lambda: None if rnd.random() < null_rate else kind()


@pytest.mark.parametrize("seed", range(200))
def test_csv_matches_the_csv_module_value_by_value(seed: int) -> None:
    rnd = random.Random(seed)
    width = rnd.choice([1, 2, 3, 6])
    makers = [random_column(rnd) for _ in range(width)]
    rows = [tuple(make() for make in makers) for _ in range(rnd.randint(1, 40))]
    cut = rnd.randint(0, len(rows))
    columns = [f"c{index}" for index in range(width)]

    assert encode_all(CsvEncoder(), columns, rows[:cut], rows[cut:]) == reference_csv(columns, rows)


def test_csv_is_utf8_and_keeps_unicode() -> None:
    data = encode_all(CsvEncoder(), ["città"], [("Zürich ✓ 東京",)])

    assert data.decode("utf-8") == "città\r\nZürich ✓ 東京\r\n"
    assert not data.startswith(b"\xef\xbb\xbf")


def test_csv_batches_concatenate_into_one_document() -> None:
    encoder = CsvEncoder()
    data = encode_all(encoder, ["n"], [(1,), (2,)], [], [(3,)])

    assert parse_csv(data) == [["n"], ["1"], ["2"], ["3"]]


@pytest.mark.parametrize("batches", [[], [[]], [[], []]])
def test_json_with_no_rows_is_an_empty_array(batches: list[list[Row]]) -> None:
    assert json.loads(encode_all(JsonEncoder(), ["a"], *batches)) == []


def test_json_with_one_row_is_an_array_of_one_object() -> None:
    assert json.loads(encode_all(JsonEncoder(), ["a", "b"], [(1, "x")])) == [{"a": 1, "b": "x"}]


def test_json_rows_across_several_batches_form_one_valid_array() -> None:
    batches = [[(i, f"row {i}") for i in range(start, start + 3)] for start in (0, 3, 6)]

    data = encode_all(JsonEncoder(), ["n", "label"], batches[0], [], batches[1], batches[2])

    assert json.loads(data) == [{"n": i, "label": f"row {i}"} for i in range(9)]


def test_json_writes_decimals_as_numbers_and_dates_uuids_as_strings() -> None:
    row = (Decimal("12.50"), date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, tzinfo=UTC), UUID(int=1), None, True)

    [obj] = json.loads(encode_all(JsonEncoder(), ["d", "day", "at", "id", "none", "flag"], [row]), parse_float=Decimal)

    assert obj == {
        "d": Decimal("12.50"),
        "day": "2026-01-02",
        "at": "2026-01-02T03:04:00Z",
        "id": "00000000-0000-0000-0000-000000000001",
        "none": None,
        "flag": True,
    }


def test_json_turns_non_finite_decimals_into_null_so_the_document_stays_valid() -> None:
    rows = [(Decimal("NaN"), "NaN is fine in a string"), (Decimal("Infinity"), "x"), (Decimal("1"), "y")]

    data = encode_all(JsonEncoder(), ["d", "s"], rows)

    assert json.loads(data) == [{"d": None, "s": "NaN is fine in a string"}, {"d": None, "s": "x"}, {"d": 1, "s": "y"}]


NON_FINITE = [Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")]
NON_FINITE_FLOATS = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", [*NON_FINITE, *NON_FINITE_FLOATS], ids=str)
def test_json_writes_nan_and_infinities_as_null_alone_in_arrays_and_in_documents(value: object) -> None:
    rows = [(value, [Decimal("1.5"), value], {"k": value}), (Decimal("2"), [], {})]

    data = encode_all(JsonEncoder(), ["v", "a", "doc"], rows)

    assert json.loads(data) == [{"v": None, "a": [1.5, None], "doc": {"k": None}}, {"v": 2, "a": [], "doc": {}}]


@pytest.mark.parametrize("value", [*NON_FINITE, *NON_FINITE_FLOATS], ids=str)
def test_csv_writes_nan_and_infinities_as_null_in_typed_mixed_and_array_columns(value: object) -> None:
    same_type = Decimal("2.5") if isinstance(value, Decimal) else 2.5
    rows = [(value, value, [value, 1]), (same_type, "text", None), (None, None, [])]

    data = encode_all(CsvEncoder(), ["typed", "mixed", "array"], rows)

    assert parse_csv(data) == [["typed", "mixed", "array"], ["", "", "[null,1]"], ["2.5", "text", ""], ["", "", "[]"]]


def test_json_escapes_quotes_newlines_and_keeps_unicode() -> None:
    text = 'line "one"\nline two ✓'

    assert json.loads(encode_all(JsonEncoder(), ["t"], [(text,)])) == [{"t": text}]


def test_json_keys_stay_unique_when_column_names_repeat() -> None:
    data = encode_all(JsonEncoder(), ["n", "n", "n"], [(1, 2, 3)])

    assert json.loads(data) == [{"n": 1, "n_2": 2, "n_3": 3}]


def test_json_accepts_column_names_that_are_not_identifiers() -> None:
    data = encode_all(JsonEncoder(), ["order count", "?column?", ""], [(1, 2, 3)])

    assert json.loads(data) == [{"order count": 1, "?column?": 2, "": 3}]


def ndjson_lines(data: bytes) -> list[object]:
    assert data == b"" or data.endswith(b"\n"), "every line ends with a newline"
    return [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]


@pytest.mark.parametrize("batches", [[], [[]], [[], []]])
def test_ndjson_with_no_rows_is_an_empty_file(batches: list[list[Row]]) -> None:
    assert encode_all(NdjsonEncoder(), ["a"], *batches) == b""


def test_ndjson_writes_one_object_per_line_across_batches_with_the_json_value_rules() -> None:
    day = date(2026, 1, 2)
    batches: list[list[Row]] = [
        [(1, "a\nb", Decimal("1.50"))],
        [],
        [(2, None, Decimal("NaN")), (3, "é", Decimal("Infinity"))],
    ]

    data = encode_all(NdjsonEncoder(), ["n", "text", "d"], *batches) + encode_all(NdjsonEncoder(), ["day"], [(day,)])

    assert ndjson_lines(data) == [
        {"n": 1, "text": "a\nb", "d": 1.5},
        {"n": 2, "text": None, "d": None},
        {"n": 3, "text": "é", "d": None},
        {"day": "2026-01-02"},
    ]


def escaping_context() -> RenderContext:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return RenderContext(title="t", parameters={}, generated_at=now, csv_formula_escape=True)


def test_csv_formula_escape_puts_a_quote_before_text_a_spreadsheet_would_run() -> None:
    texts = ["=1+1", "+A1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", "a=b", ""]
    rows = [(text, -5, Decimal("-1.5")) for text in texts]

    lines = parse_csv(encode_all(CsvEncoder(escaping_context()), ["=name", "n", "d"], rows))

    assert lines[0] == ["'=name", "n", "d"]
    assert [line[0] for line in lines[1:]] == ["'=1+1", "'+A1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "plain", "a=b", ""]
    assert {(line[1], line[2]) for line in lines[1:]} == {("-5", "-1.5")}, "numbers are never escaped"


def test_csv_without_formula_escape_is_byte_for_byte_what_the_query_returned() -> None:
    rows = [("=1+1", "@x")]

    assert encode_all(CsvEncoder(), ["a", "b"], rows) == b"a,b\r\n=1+1,@x\r\n"
