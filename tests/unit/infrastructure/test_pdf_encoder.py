"""PDF results, read back with pypdf and rendered with pdfium: what a person printing the report sees."""

import asyncio
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pypdf
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image

from application.errors import ReportOutputFailed
from application.ports import RenderContext, Row
from domain.jobs import ErrorCode
from domain.reports import Chart, ChartType, ParamValue
from infrastructure.pdf import MAX_COLUMNS, PdfEncoder

GENERATED = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
SALES = ["region", "amount", "tax"]


def context(
    title: str = "Sales by region", parameters: Mapping[str, ParamValue] | None = None, chart: Chart | None = None
) -> RenderContext:
    return RenderContext(title=title, parameters=parameters or {}, generated_at=GENERATED, chart=chart)


async def pdf_of(
    columns: Sequence[str], *batches: Sequence[Row], ctx: RenderContext | None = None, max_rows: int = 10_000
) -> bytes:
    """The document of these rows, written as the worker writes it: begin, a batch at a time, end, close."""
    encoder = PdfEncoder(ctx or context(), max_rows=max_rows)
    try:
        data = encoder.begin(columns) + b"".join(encoder.encode(batch) for batch in batches)
        return data + b"".join([chunk async for chunk in encoder.end()])
    finally:
        encoder.close()


def reader(data: bytes) -> pypdf.PdfReader:
    return pypdf.PdfReader(io.BytesIO(data))


def texts(data: bytes) -> list[str]:
    return [page.extract_text() for page in reader(data).pages]


def first_page(data: bytes) -> Image.Image:
    image: Image.Image = pdfium.PdfDocument(data)[0].render(scale=1).to_pil()
    return image.convert("RGB")


def is_drawn(image: Image.Image) -> bool:
    """Some dark pixels: text or lines."""
    return image.convert("L").point(lambda value: 255 if value < 128 else 0).getbbox() is not None


def has_colour(image: Image.Image) -> bool:
    """Some saturated pixels: the chart's palette (the table is grey, black and white)."""
    saturation = image.convert("HSV").getchannel("S")
    return saturation.point(lambda value: 255 if value > 100 else 0).getbbox() is not None


async def test_the_first_page_holds_the_title_parameters_time_header_and_first_rows() -> None:
    ctx = context(parameters={"region": "EU", "since": "2026-01-01", "limit": 5, "draft": False, "owner": None})
    data = await pdf_of(["order_id", "customer"], [(1001, "Acme"), (1002, "Globex")], ctx=ctx)

    [page] = texts(data)
    assert "Sales by region" in page
    for shown in ("region = EU", "since = 2026-01-01", "limit = 5", "draft = false", "owner = (not set)"):
        assert shown in page
    assert "Generated 2026-03-01 12:30:05 UTC" in page
    assert "order_id" in page
    assert "customer" in page
    assert "1001" in page
    assert "Globex" in page
    assert "Page 1 of 1" in page


async def test_no_parameters_are_said_to_be_none() -> None:
    [page] = texts(await pdf_of(["a"], [(1,)]))

    assert "Parameters: none" in page


async def test_the_document_is_titled_after_the_report_and_authored_by_reportgen() -> None:
    metadata = reader(await pdf_of(["a"], [(1,)], ctx=context(title="Q1 <margins> & more"))).metadata

    assert metadata is not None
    assert metadata.title == "Q1 <margins> & more"
    assert metadata.author == "reportgen"
    assert metadata.creator == "reportgen"


async def test_a_long_table_runs_over_pages_each_with_the_header_a_footer_and_every_row_once() -> None:
    rows = [(f"r{n:05d}", f"customer {n}", n * 10) for n in range(2_000)]
    batches = [rows[start : start + 1000] for start in range(0, len(rows), 1000)]

    pages = texts(await pdf_of(["order_ref", "customer_name", "amount_cents"], *batches))

    assert len(pages) > 10
    for number, page in enumerate(pages, start=1):
        assert "order_ref" in page
        assert "customer_name" in page
        assert "amount_cents" in page
        assert f"Page {number} of {len(pages)}" in page
        assert "Sales by region" in page.splitlines()[-1] + page.splitlines()[-2]
    refs = [token for page in pages for token in page.split() if token.startswith("r0")]
    assert refs == [ref for ref, _, _ in rows]


async def test_the_first_page_renders_to_an_image_that_is_not_blank() -> None:
    data = await pdf_of(SALES, [("north", 10, 1.5), ("south", 20, 3.0)])

    assert is_drawn(first_page(data))


async def test_no_rows_is_a_header_alone_and_a_note() -> None:
    data = await pdf_of(["region", "amount"])

    [page] = texts(data)
    assert "region" in page
    assert "amount" in page
    assert "No rows." in page
    assert is_drawn(first_page(data))


async def test_a_single_column_is_a_portrait_page() -> None:
    data = await pdf_of(["name"], [("alpha",), ("beta",)])

    box = reader(data).pages[0].mediabox
    assert box.height > box.width
    assert "beta" in texts(data)[0]


async def test_two_hundred_columns_show_the_first_that_fit_a_landscape_page_and_say_so() -> None:
    columns = [f"c{n}" for n in range(200)]
    rows = [tuple(f"{n}/{r}" for n in range(200)) for r in range(50)]

    data = await pdf_of(columns, rows)

    document = reader(data)
    box = document.pages[0].mediabox
    assert box.width > box.height
    assert len(document.pages) == 2
    page = texts(data)[0]
    assert f"This document shows the first {MAX_COLUMNS} of 200 columns. Ask for xlsx or csv for all of them." in page
    assert {"c0", f"c{MAX_COLUMNS - 1}", "0/0", f"{MAX_COLUMNS - 1}/0"} <= set(page.split())
    assert f"c{MAX_COLUMNS}" not in page.split()
    assert is_drawn(first_page(data))


async def test_a_note_names_both_the_rows_and_the_columns_left_out() -> None:
    rows = [tuple(range(30)) for _ in range(12)]

    [page] = texts(await pdf_of([f"c{n}" for n in range(30)], rows, max_rows=5))

    assert f"the first 5 rows of 12 and the first {MAX_COLUMNS} of 30 columns" in page


async def test_a_table_with_more_than_six_columns_is_landscape() -> None:
    data = await pdf_of([f"c{n}" for n in range(7)], [tuple(range(7))])

    box = reader(data).pages[0].mediabox
    assert box.width > box.height


async def test_a_column_name_too_long_for_its_column_is_written_on_two_lines() -> None:
    columns = [f"quarterly_revenue_{n}" for n in range(12)]

    [page] = texts(await pdf_of(columns, [tuple(range(12))]))

    lines = page.splitlines()
    assert "quarterly_" in lines
    assert "revenue_7" in lines


async def test_null_in_every_type_is_an_empty_cell() -> None:
    columns = ["text", "int", "float", "decimal", "bool", "day", "at", "bytes", "json", "uuid"]
    values = ("word", 7, 2.5, Decimal("1.25"), True, date(2026, 1, 2), GENERATED, b"ab", [1], UUID(int=1))

    [page] = texts(await pdf_of(columns, [(None,) * len(columns), values, (None,) * len(columns)]))

    assert "word" in page
    assert "None" not in page
    assert "null" not in page


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        (False, "false"),
        (2**70, "1180591620717411303424"),
        (-(2**63), "-9223372036854775808"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("1E+3"), "1000"),
        (date(1850, 7, 4), "1850-07-04"),
        (date(1, 1, 1), "0001-01-01"),
        (datetime(1899, 12, 31, 23, 59, 58), "1899-12-31T23:59:58"),  # noqa: DTZ001 (a timestamp without time zone)
        (datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T05:04:05+02:00"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),  # as asyncpg returns timestamptz
        (time(13, 45), "13:45:00"),
        (UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (b"\x00\x01\x02", "<3 bytes>"),
        ({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}'),
        ([1, "two"], '[1,"two"]'),
    ],
)
async def test_values_are_written_as_people_read_them(value: object, shown: str) -> None:
    [page] = texts(await pdf_of(["label", "value"], [("the value", value)]))

    assert shown in page


async def test_nan_and_infinities_are_empty_cells() -> None:
    row = (math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), "end")

    [page] = texts(await pdf_of([f"c{n}" for n in range(7)], [row]))

    assert "end" in page
    assert "nan" not in page.lower()
    assert "inf" not in page.lower()


async def test_text_in_any_script_is_written_without_failing_and_ascii_comes_back_verbatim() -> None:
    ctx = context(title="Ventes 売上 مبيعات 📈", parameters={"région": "Zürich 東京", "note": "שלום"})
    columns = ["name", "城市", "emoji 🎉", "ascii_after"]
    rows = [
        ("Ærøskøbing Œuvre Łukasz ÿ €", "東京都", "😀👍🏽", "plain-ascii-1"),
        ("مرحبا بالعالم", "서울", "\U0001f9ea", "plain-ascii-2"),
        ("line\nbreak\ttab\x00nul", "\ud800 lone surrogate", "\u202eright to left", "plain-ascii-3"),
    ]

    data = await pdf_of(columns, rows, ctx=ctx)

    [page] = texts(data)
    assert "Ærøskøbing Œuvre Łukasz ÿ €" in page
    assert "plain-ascii-1" in page
    assert "plain-ascii-3" in page
    assert "line break tab nul" in page
    assert is_drawn(first_page(data))


async def test_very_long_text_is_cut_to_its_column_with_an_ellipsis() -> None:
    long_text = "start " + "lorem ipsum dolor " * 10_000 + "\nTAIL"

    data = await pdf_of(["id", "body"], [(1, long_text), (2, "short")])

    pages = texts(data)
    assert len(pages) == 1
    assert "start lorem" in pages[0]
    assert "…" in pages[0]
    assert "TAIL" not in pages[0]
    assert "short" in pages[0]


async def test_rows_past_the_cap_are_counted_and_a_note_says_where_to_get_them_all() -> None:
    rows = [(f"row-{n:02d}",) for n in range(25)]

    [page] = texts(await pdf_of(["ref"], rows[:7], rows[7:20], rows[20:], max_rows=10))

    assert "This document shows the first 10 rows of 25. Ask for xlsx or csv for all of them." in page
    assert "row-09" in page
    assert "row-10" not in page


async def test_the_cap_note_writes_thousands_with_separators() -> None:
    rows = [(n,) for n in range(1_234)]

    pages = texts(await pdf_of(["n"], rows[:1000], rows[1000:], max_rows=1_000))

    assert "the first 1,000 rows of 1,234" in pages[0]


async def test_a_table_under_the_cap_says_how_many_rows_it_has() -> None:
    [page] = texts(await pdf_of(["n"], [(1,), (2,), (3,)]))

    assert "3 rows." in page


async def test_a_chart_naming_columns_the_query_does_not_return_fails_in_begin() -> None:
    chart = Chart(ChartType.BAR, "region", ("amount", "discount", "margin"))
    encoder = PdfEncoder(context(chart=chart))

    with pytest.raises(ReportOutputFailed) as failed:
        encoder.begin(SALES)
    encoder.close()

    assert failed.value.code == ErrorCode.INVALID_CHART
    assert "'discount', 'margin'" in failed.value.message
    assert "region, amount, tax" in failed.value.message


async def test_a_bar_chart_is_drawn_above_the_table_with_a_caption_and_a_legend() -> None:
    chart = Chart(ChartType.BAR, "region", ("amount", "tax"))
    rows = [("north", 120, 12.5), ("south", Decimal("80.5"), None), ("east", None, "n/a"), ("west", 40, math.nan)]

    data = await pdf_of(SALES, rows, ctx=context(chart=chart))

    page = texts(data)[0]
    assert "Bar chart of amount, tax by region" in page
    assert "north" in page
    image = first_page(data)
    assert is_drawn(image)
    assert has_colour(image)


async def test_a_bar_chart_of_many_categories_draws_the_first_200() -> None:
    chart = Chart(ChartType.BAR, "region", ("amount",))
    rows = [(f"cat {n}", n, n / 2) for n in range(450)]

    data = await pdf_of(SALES, rows, ctx=context(chart=chart))

    assert "Bar chart of amount by region (first 200 categories)" in texts(data)[0]
    assert has_colour(first_page(data))


async def test_a_line_chart_of_thousands_of_points_with_gaps_is_drawn() -> None:
    chart = Chart(ChartType.LINE, "day", ("visits", "orders"))
    start = date(2020, 1, 1)
    rows = [
        (start + timedelta(days=n), None if n % 97 == 0 else n % 365, "x" if n % 13 == 0 else n % 50)
        for n in range(3_000)
    ]

    data = await pdf_of(["day", "visits", "orders"], rows[:1000], rows[1000:], ctx=context(chart=chart))

    page = texts(data)[0]
    assert "Line chart of visits, orders by day" in page
    assert "visits" in page
    image = first_page(data)
    assert is_drawn(image)
    assert has_colour(image)


async def test_a_chart_may_draw_a_column_the_table_has_no_room_for() -> None:
    columns = [f"c{n}" for n in range(40)]
    chart = Chart(ChartType.BAR, "c0", ("c39",))

    data = await pdf_of(columns, [tuple(range(n, n + 40)) for n in range(5)], ctx=context(chart=chart))

    assert "Bar chart of c39 by c0" in texts(data)[0]
    assert has_colour(first_page(data))


async def test_a_chart_with_no_numbers_says_so_instead_of_drawing() -> None:
    chart = Chart(ChartType.LINE, "region", ("amount",))

    data = await pdf_of(SALES, [("north", None, 1), ("south", "abc", 2)], ctx=context(chart=chart))

    assert "Line chart of amount by region (no numbers to draw)" in texts(data)[0]


async def test_a_chart_over_no_rows_still_makes_a_document() -> None:
    data = await pdf_of(SALES, ctx=context(chart=Chart(ChartType.BAR, "region", ("amount",))))

    assert "No rows." in texts(data)[0]


async def test_the_document_is_built_off_the_event_loop() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    encoder = PdfEncoder(context())
    encoder.begin(["n"])
    encoder.encode([(n,) for n in range(500)])
    before = ticks
    chunks = [chunk async for chunk in encoder.end()]
    ticker.cancel()
    encoder.close()

    assert b"".join(chunks).startswith(b"%PDF-")
    assert ticks > before


async def test_close_releases_the_encoder_whether_or_not_it_ended() -> None:
    encoder = PdfEncoder(context())
    encoder.begin(["n"])
    encoder.encode([(1,)])
    encoder.close()

    ended = PdfEncoder(context())
    ended.begin(["n"])
    async for _ in ended.end():
        break
    ended.close()
