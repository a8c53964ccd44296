import io
import math
import random
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from asyncpg.pgproto import pgproto  # type: ignore[import-untyped]

from application.errors import ReportOutputFailed
from application.ports import RenderContext, Row
from domain.jobs import ErrorCode
from infrastructure.parquet import ParquetEncoder, _inferred_digits, _one_exponent_digits

GENERATED_AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CONTEXT = RenderContext(title="Ventes d'été 2025", parameters={}, generated_at=GENERATED_AT)


def naive(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A SQL timestamp without time zone, as drivers return it."""
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).replace(tzinfo=None)


async def write_parquet(
    columns: Sequence[str], *batches: Sequence[Row], row_group_rows: int = 65_536, context: RenderContext | None = None
) -> bytes:
    """The file's bytes, the encoder driven as the worker drives it."""
    encoder = ParquetEncoder(context, row_group_rows=row_group_rows)
    try:
        out = encoder.begin(columns)
        for batch in batches:
            out += encoder.encode(batch)
        out += b"".join([chunk async for chunk in encoder.end()])
    finally:
        encoder.close()
    return out


def read(data: bytes) -> Any:
    return pq.read_table(io.BytesIO(data))


async def one_column(values: Sequence[object], **options: Any) -> Any:
    """The Arrow column that a report of one column `v` with these values becomes."""
    return read(await write_parquet(["v"], [(value,) for value in values], **options)).column("v")


async def test_integers_floats_and_booleans_keep_their_types_and_values() -> None:
    rows = [(1, 1.5, True), (-(2**63), -0.0, False), (2**63 - 1, 1e300, None), (None, None, True)]

    table = read(await write_parquet(["i", "f", "b"], rows))

    assert table.schema.types == [pa.int64(), pa.float64(), pa.bool_()]
    assert table.to_pylist() == [dict(zip(["i", "f", "b"], row, strict=True)) for row in rows]


async def test_decimals_keep_exact_values_at_the_largest_scale_of_the_first_row_group() -> None:
    values = [Decimal("1.5"), Decimal("-123456789012345678901234567890.12"), Decimal("0E-2"), Decimal("1E+3"), None]

    column = await one_column(values)

    assert column.type == pa.decimal128(38, 2)
    assert [None if v is None else str(v) for v in column.to_pylist()] == [
        "1.50",
        "-123456789012345678901234567890.12",
        "0.00",
        "1000.00",
        None,
    ]


def decimals_of_one_exponent(seed: int) -> Iterator[list[Decimal | None]]:
    """Columns whose values share one exponent (a numeric(p, s) column's), of 0 to 40 digits, NULLs among them."""
    generator = random.Random(seed)
    for _ in range(3_000):
        exponent = generator.randint(-40, 10)
        column: list[Decimal | None] = [None]
        for _ in range(generator.randint(1, 5)):
            digits = generator.randint(0, 40)
            coefficient = generator.randint(0, 10**digits)
            column.append(Decimal((generator.randint(0, 1), tuple(map(int, str(coefficient))), exponent)))
        yield column


def test_decimals_of_one_exponent_get_the_precision_and_scale_that_arrows_inference_gives() -> None:
    edges: list[list[Decimal | None]] = [
        [Decimal("0")],
        [Decimal("-0.00"), Decimal("0.00")],
        [Decimal("1E+5"), Decimal("7E+5")],
        [Decimal("0.001")],
        [Decimal("9" * 38)],
        [Decimal("9" * 39)],
        [Decimal("0." + "9" * 38)],
    ]
    compared = 0
    for column in [*edges, *decimals_of_one_exponent(seed=12)]:
        fast = _one_exponent_digits(column)
        assert fast is not None
        inferred = _inferred_digits(column)
        if fast[0] <= 38 or inferred[0] <= 38:  # above 38 digits, both make a text column
            assert fast == inferred, column
            compared += 1
    assert compared > 1_000


def test_decimals_of_several_exponents_or_not_finite_are_left_to_arrows_inference() -> None:
    assert _one_exponent_digits([Decimal("1.5"), Decimal("2.50")]) is None
    assert _one_exponent_digits([Decimal("1.5"), Decimal("NaN")]) is None
    assert _one_exponent_digits([Decimal("Infinity"), Decimal("Infinity")]) is None
    assert _one_exponent_digits([None, None]) is None


async def test_decimals_that_need_more_than_38_digits_make_a_text_column() -> None:
    column = await one_column([Decimal("1" * 39), Decimal("0.5")])

    assert column.type == pa.string()
    assert column.to_pylist() == ["1" * 39, "0.5"]


async def test_float_nan_and_infinities_are_kept_and_those_of_decimals_become_null() -> None:
    table = read(
        await write_parquet(
            ["f", "d"],
            [(math.nan, Decimal("NaN")), (math.inf, Decimal("Infinity")), (-math.inf, Decimal("-Infinity"))],
            [(2.0, Decimal("2.25"))],
        )
    )

    floats = table.column("f").to_pylist()
    assert math.isnan(floats[0])
    assert floats[1:] == [math.inf, -math.inf, 2.0]
    assert table.column("d").type == pa.decimal128(38, 2)
    assert table.column("d").to_pylist() == [None, None, None, Decimal("2.25")]


async def test_integers_among_floats_make_a_float_column_and_later_integers_fit_it() -> None:
    column = await one_column([1, 2.5, None, 3], row_group_rows=2)

    assert column.type == pa.float64()
    assert column.to_pylist() == [1.0, 2.5, None, 3.0]


async def test_text_of_any_script_and_bytes_read_back_unchanged() -> None:
    texts = ["漢字かな", "مرحبا بالعالم", "שלום", "👍🏽 family 👨‍👩‍👧", "e\u0301", "a\x00b", "", None]
    blobs = [b"\x00\xff", b"", None, b"plain", b"\x89PNG", b"x" * 1000, b"\n", None]

    table = read(await write_parquet(["t", "b"], list(zip(texts, blobs, strict=True))))

    assert table.schema.types == [pa.string(), pa.binary()]
    assert table.column("t").to_pylist() == texts
    assert table.column("b").to_pylist() == blobs


async def test_dates_times_and_intervals_keep_their_values_dates_before_1900_too() -> None:
    rows = [
        (date(1, 1, 1), naive(1850, 5, 6, 7, 8, 9, 123456), time(23, 59, 59, 999999), timedelta(days=-3, seconds=5)),
        (date(1899, 12, 31), naive(2024, 2, 29), time(0, 0), timedelta(microseconds=1)),
        (date(9999, 12, 31), None, None, None),
    ]

    table = read(await write_parquet(["d", "ts", "t", "iv"], rows))

    assert table.schema.types == [pa.date32(), pa.timestamp("us"), pa.time64("us"), pa.duration("us")]
    assert [tuple(row.values()) for row in table.to_pylist()] == rows


async def test_aware_timestamps_are_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    values = [datetime(2024, 6, 1, 12, 0, tzinfo=plus_two), datetime(1890, 1, 1, tzinfo=UTC), None]

    column = await one_column(values)

    assert column.type == pa.timestamp("us", tz="UTC")
    assert column.to_pylist() == values
    assert column.to_pylist()[0].utcoffset() == timedelta(0)
    assert column.to_pylist()[0].hour == 10


async def test_uuids_arrays_and_json_documents_become_text() -> None:
    uuid = UUID("12345678-1234-5678-1234-567812345678")
    rows = [
        (uuid, [1, 2, None], {"a": [1, 2.5], "b": {"c": "é"}}),
        (None, [math.nan, "x"], {"n": Decimal("NaN"), "d": Decimal("1.10")}),
        (uuid, None, [{"k": None}]),
    ]

    table = read(await write_parquet(["id", "arr", "doc"], rows))

    assert table.schema.types == [pa.string(), pa.string(), pa.string()]
    assert table.column("id").to_pylist() == [str(uuid), None, str(uuid)]
    assert table.column("arr").to_pylist() == ["[1,2,null]", '[null,"x"]', None]
    assert table.column("doc").to_pylist() == ['{"a":[1,2.5],"b":{"c":"é"}}', '{"n":null,"d":1.10}', '[{"k":null}]']


async def test_subclasses_of_known_types_keep_their_column_type() -> None:
    class Colour(StrEnum):
        RED = "red"

    uuid = pgproto.UUID("12345678-1234-5678-1234-567812345678")  # what asyncpg returns for a uuid column

    uuids = await one_column([uuid, None, uuid], row_group_rows=2)
    colours = await one_column([Colour.RED, "blue", Colour.RED], row_group_rows=1)

    assert uuids.to_pylist() == ["12345678-1234-5678-1234-567812345678", None, "12345678-1234-5678-1234-567812345678"]
    assert (colours.type, colours.to_pylist()) == (pa.string(), ["red", "blue", "red"])


async def test_nulls_are_read_back_as_nulls_in_every_type() -> None:
    first = (
        1, 1.5, Decimal("1.5"), "s", b"b", True, date(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC),
        naive(2024, 1, 1), time(1), timedelta(1), UUID(int=1), [1], {"a": 1},
    )  # fmt: skip
    columns = [f"c{index}" for index in range(len(first))]

    table = read(await write_parquet(columns, [first, (None,) * len(first)]))

    assert table.num_rows == 2
    assert all(value is None for value in table.to_pylist()[1].values())
    assert all(table.column(name).null_count == 1 for name in columns)


async def test_a_column_of_mixed_types_holds_each_values_text() -> None:
    values = [1, "two", 3.5, Decimal("4.50"), True, date(2024, 1, 2), b"\x01", [1], None, math.nan]

    column = await one_column(values)

    assert column.type == pa.string()
    assert column.to_pylist() == ["1", "two", "3.5", "4.50", "true", "2024-01-02", "AQ==", "[1]", None, None]


async def test_a_column_null_through_the_first_row_group_holds_later_values_as_text() -> None:
    column = await one_column([None, None, 42, None, Decimal("1.5")], row_group_rows=2)

    assert column.type == pa.string()
    assert column.to_pylist() == [None, None, "42", None, "1.5"]


async def test_writes_a_row_group_per_row_group_rows() -> None:
    batches = [[(i, f"r{i}") for i in range(start, start + 500)] for start in range(0, 3500, 500)]

    data = await write_parquet(["n", "s"], *batches, row_group_rows=1000)

    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert metadata.num_row_groups == 4
    assert [metadata.row_group(i).num_rows for i in range(4)] == [1000, 1000, 1000, 500]
    assert read(data).column("n").to_pylist() == list(range(3500))


async def test_encode_returns_each_row_group_as_soon_as_it_is_full() -> None:
    encoder = ParquetEncoder(row_group_rows=1000)
    assert encoder.begin(["n"]) == b""

    before = encoder.encode([(i,) for i in range(999)])
    first_group = encoder.encode([(999,), (1000,)])
    rest = b"".join([chunk async for chunk in encoder.end()])
    encoder.close()

    assert before == b""
    assert first_group.startswith(b"PAR1")
    assert rest.endswith(b"PAR1")
    assert read(first_group + rest).column("n").to_pylist() == list(range(1001))


async def test_zero_rows_make_a_valid_file_with_text_columns() -> None:
    table = read(await write_parquet(["a", "b"]))

    assert table.num_rows == 0
    assert table.schema.names == ["a", "b"]
    assert table.schema.types == [pa.string(), pa.string()]


async def test_a_query_without_columns_fails_clearly() -> None:
    encoder = ParquetEncoder()

    with pytest.raises(ReportOutputFailed) as raised:
        encoder.begin([])
    encoder.close()

    assert raised.value.code == ErrorCode.OUTPUT_FAILED
    assert "no columns" in raised.value.message


async def test_one_column_and_two_hundred_columns() -> None:
    names = [f"c{index}" for index in range(200)]
    rows = [tuple(range(row, row + 200)) for row in range(10)]

    single = read(await write_parquet(["only"], [(1,), (2,)]))
    wide = read(await write_parquet(names, rows))

    assert single.column("only").to_pylist() == [1, 2]
    assert wide.schema.names == names
    assert [tuple(row.values()) for row in wide.to_pylist()] == rows


async def test_repeated_column_names_get_a_suffix() -> None:
    table = read(await write_parquet(["n", "n", "m", "n"], [(1, 2, 3, 4)]))

    assert table.schema.names == ["n", "n_2", "m", "n_3"]
    assert table.to_pylist() == [{"n": 1, "n_2": 2, "m": 3, "n_3": 4}]


async def test_the_title_and_generation_time_are_in_the_key_value_metadata() -> None:
    data = await write_parquet(["n"], [(1,)], context=CONTEXT)

    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert metadata.metadata[b"reportgen.title"].decode() == "Ventes d'été 2025"
    assert metadata.metadata[b"reportgen.generated_at"] == b"2025-03-04T05:06:07+00:00"
    assert metadata.row_group(0).column(0).compression == "ZSTD"


async def test_a_column_that_changes_type_fails_naming_the_column_and_the_row() -> None:
    first = [(i, "x") for i in range(1000)]

    with pytest.raises(ReportOutputFailed) as raised:
        await write_parquet(["id", "price"], first, [(1000, "y"), ("1001", "z")], row_group_rows=1000)

    assert raised.value.code == ErrorCode.OUTPUT_FAILED
    assert raised.value.message == (
        "Column 'id' holds values of more than one type (bigint until row 1,001, then text at row 1,002); "
        "cast it in the query to one type to write Parquet."
    )


@pytest.mark.parametrize(
    ("first", "later", "described"),
    [
        (1, True, "bigint until row 1, then boolean at row 2"),
        (1.5, Decimal("1.5"), "double precision until row 1, then numeric at row 2"),
        (datetime(2024, 1, 1, tzinfo=UTC), naive(2024, 1, 1), "timestamp with time zone until row 1, then timestamp"),
        (naive(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC), "timestamp until row 1, then timestamp with time"),
        (date(2024, 1, 1), naive(2024, 1, 1), "date until row 1, then timestamp at row 2"),
        ("a", 1, "text until row 1, then bigint at row 2"),
    ],
)
async def test_a_later_value_that_arrow_would_coerce_still_fails(first: object, later: object, described: str) -> None:
    with pytest.raises(ReportOutputFailed) as raised:
        await one_column([first, later], row_group_rows=1)

    assert described in raised.value.message


async def test_a_decimal_with_a_larger_scale_than_the_first_row_group_fails_naming_the_column() -> None:
    with pytest.raises(ReportOutputFailed) as raised:
        await write_parquet(["price"], [(Decimal("1.25"),), (Decimal("2.5"),)], [(Decimal("3.125"),)], row_group_rows=2)

    assert raised.value.code == ErrorCode.OUTPUT_FAILED
    assert raised.value.message.startswith(
        "Column 'price' holds a value at row 3 that its type, numeric(38,2) (set by its first rows), cannot hold; "
        "cast it in the query"
    )


async def test_an_integer_beyond_64_bits_fails_clearly() -> None:
    with pytest.raises(ReportOutputFailed) as raised:
        await one_column([1, 2**64])

    assert "Column 'v' holds a value at row 2 that its type, bigint" in raised.value.message


async def test_close_without_end_releases_the_encoder_quietly() -> None:
    encoder = ParquetEncoder(row_group_rows=10)
    encoder.begin(["n"])
    encoder.encode([(i,) for i in range(25)])

    encoder.close()
    encoder.close()


def streamed_rows(count: int, batch_rows: int = 1000) -> Iterator[list[Row]]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for first in range(0, count, batch_rows):
        yield [(i, f"name {i}", i / 3, start + timedelta(seconds=i)) for i in range(first, first + batch_rows)]


async def test_memory_stays_about_one_row_group_however_many_rows_are_streamed(tmp_path: Path) -> None:
    rows, row_group_rows = 200_000, 10_000
    tracemalloc.start()
    try:
        one_batch = next(streamed_rows(1000))
        whole_result = tracemalloc.get_traced_memory()[0] * (rows // 1000)  # what holding every row would take
        del one_batch
        tracemalloc.reset_peak()
        encoder = ParquetEncoder(row_group_rows=row_group_rows)
        arrow_bytes = 0
        with (tmp_path / "out.parquet").open("wb") as file:
            file.write(encoder.begin(["id", "name", "ratio", "at"]))
            for batch in streamed_rows(rows):
                file.write(encoder.encode(batch))
                arrow_bytes = max(arrow_bytes, pa.total_allocated_bytes())
            for chunk in [chunk async for chunk in encoder.end()]:
                file.write(chunk)
            encoder.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < whole_result / 4
    assert arrow_bytes < whole_result / 4
    metadata = pq.ParquetFile(tmp_path / "out.parquet").metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (rows, rows // row_group_rows)


async def test_only_text_columns_that_repeat_values_are_dictionary_encoded() -> None:
    rows = [(f"region-{n % 4}", f"unique-{n}", n % 4) for n in range(1000)]

    data = await write_parquet(["region", "label", "bucket"], rows)

    chunk = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    encodings = {chunk.column(i).path_in_schema: set(chunk.column(i).encodings) for i in range(3)}
    assert any("DICTIONARY" in encoding for encoding in encodings["region"]), encodings
    assert not any("DICTIONARY" in encoding for encoding in encodings["label"]), encodings
    assert not any("DICTIONARY" in encoding for encoding in encodings["bucket"]), encodings
    assert read(data).column("region").to_pylist() == [row[0] for row in rows]
