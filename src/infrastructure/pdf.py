"""PDF: a document to print. The report's name, the parameters it ran with and when, an optional chart, then the rows
as a table whose header is repeated on every page, with the report's name and "Page N of M" in each footer.

The rows are kept as display text, at most `max_rows` of them (the rest are only counted), and laid out in a thread
once they end. Each page's rows are a table of their own: every row is one line high, so the rows that fit a page are
known without measuring them, and the layout grows with the rows rather than with their square (as one long reportlab
table does).

Pages are A4, landscape when the table has more than six columns or is too wide for portrait. A column is as wide as
its header and text need, at most `MAX_COLUMN_WIDTH`; a table still too wide gets a smaller font and its widest columns
narrowed until it fits, none narrower than `MIN_COLUMN_WIDTH`: a table with more columns than fit a landscape page at
that width shows the first `MAX_COLUMNS`. Text longer than its column is cut, ending in `…`. A note above the table
says when rows or columns were left out.

Values are written as CSV writes them (`encoders.value_text`: NULL, NaN and infinities empty, ISO 8601 dates and
times, exact decimals, compact JSON), except binary values, which are `<N bytes>`. The font is reportlab's Bitstream
Vera, embedded as a subset: Latin-1 and part of Latin Extended-A. A character it lacks (CJK, Hebrew, Arabic, emoji)
is drawn as an empty box, and right-to-left text is drawn left to right.

The chart is drawn from the kept rows: the x column's text as categories, the y columns' numbers (not booleans) as
series. A bar chart draws the first `MAX_BARS` categories, a missing value (NULL, not a number, NaN, infinite) as 0; a
line chart draws every kept row and leaves a missing value out, its line joining the points either side.

One module, though past 300 lines: the table and the chart are parts of one document, used by nothing else.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from functools import cache, partial
from itertools import islice
from typing import IO, Any
from xml.sax.saxutils import escape

import reportlab  # type: ignore[import-untyped]
from reportlab.graphics.charts.barcharts import VerticalBarChart  # type: ignore[import-untyped]
from reportlab.graphics.charts.legends import Legend  # type: ignore[import-untyped]
from reportlab.graphics.charts.lineplots import LinePlot  # type: ignore[import-untyped]
from reportlab.graphics.shapes import Drawing  # type: ignore[import-untyped]
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.pdfmetrics import stringWidth  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table  # type: ignore[import-untyped]

from application.errors import ReportOutputFailed
from application.ports import RenderContext, Row, RowEncoder
from domain.jobs import ErrorCode
from domain.reports import Chart, ChartType
from infrastructure.encoders import file_chunks, value_text

MAX_ROWS = 10_000
MAX_COLUMN_WIDTH = 180.0
"""Points: about 45 characters at 7 pt."""
MIN_COLUMN_WIDTH = 32.0
"""Points: about 7 characters at 6 pt; a narrower column would show nothing but `…`."""
MAX_BARS = 200
"""Categories a bar chart draws; a line chart draws every kept row."""
_MARGIN, _FRAME_PADDING = 36.0, 6.0
_FRAME_WIDTH, _LANDSCAPE_FRAME_WIDTH = (side - 2 * (_MARGIN + _FRAME_PADDING) for side in A4)
MAX_COLUMNS = int(_LANDSCAPE_FRAME_WIDTH // MIN_COLUMN_WIDTH)
"""Columns a table shows at most (the first ones): 23."""
_FONT_SIZES = (8.0, 7.0, 6.0)
_PADDING = 2.0
_PORTRAIT_COLUMNS = 6
_SAMPLE_ROWS = 200
"""Rows, spread over the table, whose text decides a column's width (with the column's longest text)."""
_MAX_TEXT = 200
"""Characters kept of a value: more than the widest column shows at the smallest font."""
_MAX_LABELS = 20
_CHART_HEIGHT, _LEGEND_WIDTH = 190.0, 110.0
_REGULAR, _BOLD = "ReportgenSans", "ReportgenSans-Bold"
_PALETTE = tuple(
    map(colors.HexColor, ("#4E79A7", "#F28E2B", "#59A14F", "#E15759", "#76B7B2", "#EDC948", "#B07AA1", "#9C755F"))
)
_HEADER_FILL, _STRIPE, _RULE = colors.HexColor("#DCE3EB"), colors.HexColor("#F3F5F8"), colors.HexColor("#B8C0CA")
_BUILD_LOCK = threading.Lock()
"""One document is laid out at a time per process: reportlab keeps fonts and settings in module globals and does not
promise thread safety, and the layout holds the GIL, so two at once would take as long as one after the other."""
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class PdfEncoder(RowEncoder):
    """Rows to one PDF document (see the module's docstring). With a chart, `begin` raises ReportOutputFailed
    (INVALID_CHART) when the chart names a column the query does not return."""

    def __init__(self, context: RenderContext, *, max_rows: int = MAX_ROWS) -> None:
        self._context = context
        self._max_rows = max_rows
        self._columns: list[str] = []
        self._all_columns = 0
        self._rows: list[tuple[str, ...]] = []
        self._total = 0
        self._numeric: list[bool] = []
        self._chart_columns: tuple[int, ...] = ()
        self._points: list[tuple[str, list[float | None]]] = []
        self._file: IO[bytes] | None = None

    def begin(self, columns: Sequence[str]) -> bytes:
        chart = self._context.chart
        if chart is not None:
            if missing := chart.missing_columns(columns):
                raise ReportOutputFailed(ErrorCode.INVALID_CHART, _missing_message(missing, columns))
            self._chart_columns = tuple(list(columns).index(name) for name in (chart.x, *chart.y))
        self._columns = [_text(str(name)) for name in columns[:MAX_COLUMNS]]
        self._all_columns = len(columns)
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        kept = rows[: self._max_rows - len(self._rows)]
        if kept:
            shown = len(self._columns)
            self._numeric = self._numeric or _numeric_columns(kept, shown)
            if shown < self._all_columns:
                self._rows += [tuple(map(cell_text, islice(row, shown))) for row in kept]
            else:
                self._rows += [tuple(map(cell_text, row)) for row in kept]
            if self._chart_columns:
                x, *ys = self._chart_columns
                self._points += [(cell_text(row[x]), [_number(row[y]) for y in ys]) for row in kept]
        self._total += len(rows)
        return b""

    async def end(self) -> AsyncIterator[bytes]:
        file = self._file = tempfile.TemporaryFile(prefix="reportgen-pdf-")  # noqa: SIM115 (closed by close())
        await asyncio.to_thread(self._build, file)
        async for chunk in file_chunks(file):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._rows, self._points = [], []

    def _build(self, file: IO[bytes]) -> None:
        with _BUILD_LOCK:
            self._write(file)
        file.seek(0)

    def _write(self, file: IO[bytes]) -> None:
        _register_fonts()
        shape = _shape(self._columns, self._rows, self._numeric)
        margins = dict.fromkeys(("leftMargin", "rightMargin", "topMargin", "bottomMargin"), _MARGIN)
        title = self._context.title
        doc = SimpleDocTemplate(
            file, pagesize=shape.pagesize, title=title, author="reportgen", creator="reportgen", **margins
        )
        story = self._heading()
        if self._context.chart is not None:
            story += _chart(self._context.chart, self._points, doc.width - 2 * _FRAME_PADDING)
        story += self._count()
        story += [Spacer(0, 4), _Rows(self._rows, 0, shape)] if self._columns else []
        if not self._rows:
            story.append(Paragraph("No rows." if self._columns else "The query returned no columns.", _STYLES["body"]))
        doc.build(story, canvasmaker=partial(_NumberedCanvas, footer=title))

    def _count(self) -> list[Flowable]:
        kept, shown = len(self._rows), len(self._columns)
        left_out = [f"the first {kept:,} rows of {self._total:,}"] if self._total > kept else []
        left_out += [f"the first {shown} of {self._all_columns} columns"] if self._all_columns > shown else []
        if left_out:
            note = f"This document shows {' and '.join(left_out)}. Ask for xlsx or csv for all of them."
            return [Paragraph(f"<b>{note}</b>", _STYLES["body"])]
        return [Paragraph(f"{kept:,} row{'' if kept == 1 else 's'}.", _STYLES["body"])] if kept else []

    def _heading(self) -> list[Flowable]:
        context = self._context
        parameters = "; ".join(
            f"{escape(name)} = {escape(cell_text(value) if value is not None else '(not set)')}"
            for name, value in context.parameters.items()
        )
        generated = context.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return [
            Paragraph(escape(_text(context.title)), _STYLES["title"]),
            Paragraph(f"<b>Parameters:</b> {parameters or 'none'}", _STYLES["body"]),
            Paragraph(f"Generated {generated}", _STYLES["body"]),
            Spacer(0, 6),
        ]


@dataclass(frozen=True, slots=True)
class _Shape:
    """How the table is laid out: page size, font size, column widths (padding included), right-aligned columns, and
    the header's text (a name too long for its column on two lines)."""

    pagesize: tuple[float, float]
    font_size: float
    widths: list[float]
    numeric: list[bool]
    header: list[str]

    @property
    def row_height(self) -> float:
        return self.font_size * 1.25 + 2.0

    @property
    def header_height(self) -> float:
        return self.row_height + (self.font_size * 1.25 if any("\n" in name for name in self.header) else 0)

    @property
    def rooms(self) -> list[float]:
        """The width of each column's text."""
        return [width - 2 * _PADDING - 1 for width in self.widths]

    def style(self) -> list[tuple[Any, ...]]:
        return [
            ("FONT", (0, 0), (-1, -1), _REGULAR, self.font_size),
            ("FONT", (0, 0), (-1, 0), _BOLD, self.font_size),
            ("BACKGROUND", (0, 0), (-1, 0), _HEADER_FILL),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, _STRIPE]),
            ("LINEBELOW", (0, 0), (-1, 0), 0.75, _RULE),
            ("INNERGRID", (0, 0), (-1, -1), 0.25, _RULE),
            ("BOX", (0, 0), (-1, -1), 0.5, _RULE),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LEFTPADDING", (0, 0), (-1, -1), _PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), _PADDING),
            ("TOPPADDING", (0, 0), (-1, -1), 0),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            *(("ALIGN", (c, 0), (c, -1), "RIGHT") for c, number in enumerate(self.numeric) if number),
        ]


def _shape(columns: Sequence[str], rows: Sequence[tuple[str, ...]], numeric: list[bool]) -> _Shape:
    """Portrait unless the table is wide; the largest font at which the columns fit, else a small font and the widest
    columns narrowed to share what is left."""
    sample = rows[:: max(1, len(rows) // _SAMPLE_ROWS)]
    natural = [  # at 1 pt, padding aside
        max(
            stringWidth(name[:80], _BOLD, 1),
            stringWidth(max((row[c] for row in rows), key=len, default="")[:80], _REGULAR, 1),
            max((stringWidth(row[c][:80], _REGULAR, 1) for row in sample), default=0.0),
        )
        for c, name in enumerate(columns)
    ]

    def widths(size: float) -> list[float]:
        return [min(width * size + 2 * _PADDING + 1, MAX_COLUMN_WIDTH) for width in natural]

    portrait = len(columns) <= _PORTRAIT_COLUMNS and sum(widths(_FONT_SIZES[0])) <= _FRAME_WIDTH
    pagesize, frame = (A4, _FRAME_WIDTH) if portrait else (landscape(A4), _LANDSCAPE_FRAME_WIDTH)
    size = next((size for size in _FONT_SIZES if sum(widths(size)) <= frame), None)
    final = widths(size) if size is not None else _share(widths(_FONT_SIZES[-1]), frame)
    size = size or _FONT_SIZES[-1]
    header = [_two_lines(name, size, width - 2 * _PADDING - 1) for name, width in zip(columns, final, strict=True)]
    return _Shape(pagesize, size, final, numeric, header)


def _two_lines(name: str, size: float, room: float) -> str:
    """A column's name on one line, or on two (broken after a space, `_` or `-` when there is one) ending in `…`
    if it is longer still."""
    first = fit_text(name, _BOLD, size, room)
    if first == name or len(first) < 2:
        return first
    first = first[:-1]
    cut = max(first.rfind(mark) for mark in " _-") + 1
    first = first[:cut] if cut > len(first) // 2 else first
    return f"{first.rstrip()}\n{fit_text(name[len(first) :].lstrip(), _BOLD, size, room)}"


def _share(widths: list[float], total: float) -> list[float]:
    """The widths with the widest cut to one cap, so that they add up to `total` (the narrow ones stay)."""
    remaining, count = total, len(widths)
    for width in sorted(widths):
        if width * count > remaining:
            break
        remaining, count = remaining - width, count - 1
    cap = remaining / count if count else MAX_COLUMN_WIDTH
    return [min(width, cap) for width in widths]


class _Rows(Flowable):  # type: ignore[misc]
    """The table's rows from `start` on. Split at a page's end into a table of the rows that fit, with the header,
    and the rows after them."""

    def __init__(self, rows: Sequence[tuple[str, ...]], start: int, shape: _Shape) -> None:
        super().__init__()
        self._rows, self._start, self._shape = rows, start, shape

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width = sum(self._shape.widths)
        self.height = self._shape.header_height + self._shape.row_height * (len(self._rows) - self._start)
        return self.width, self.height

    def split(self, available_width: float, available_height: float) -> list[Flowable]:
        room = available_height - self._shape.header_height
        end = self._start + math.floor(room / self._shape.row_height + 1e-6)
        if end <= self._start:
            return []
        if end >= len(self._rows):
            return [self._table(self._start, len(self._rows))]
        return [self._table(self._start, end), _Rows(self._rows, end, self._shape)]

    def draw(self) -> None:
        table = self._table(self._start, len(self._rows))
        table.wrapOn(self.canv, self.width, self.height)
        table.drawOn(self.canv, 0, 0)

    def _table(self, start: int, end: int) -> Table:
        shape = self._shape
        size, rooms = shape.font_size, shape.rooms
        cells = [
            [fit_text(text, _REGULAR, size, room) for text, room in zip(row, rooms, strict=True)]
            for row in self._rows[start:end]
        ]
        return Table(
            [shape.header, *cells],
            colWidths=shape.widths,
            rowHeights=[shape.header_height] + [shape.row_height] * len(cells),
            repeatRows=1,
            style=shape.style(),
            hAlign="LEFT",
        )


def fit_text(text: str, font: str, size: float, width: float) -> str:
    """`text` cut to what fits `width` points at `size`, ending in `…` when cut. Measures as little as it can: text
    is measured only when it may not fit, and only as many characters as could fit."""
    narrowest, widest = (advance * size for advance in _advances(font))
    if len(text) * widest <= width:
        return text
    most = math.floor(width / narrowest) + 1
    if len(text) <= most and stringWidth(text, font, size) <= width:
        return text
    room = width - stringWidth("…", font, size)
    low, high = 0, min(len(text), most)
    while low < high and room > 0:  # the longest prefix that fits with the ellipsis
        middle = (low + high + 1) // 2
        if stringWidth(text[:middle], font, size) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…" if room >= 0 else ""


def cell_text(value: object) -> str:
    """A value as the table shows it: as CSV writes it (`encoders.value_text`), on one line of at most _MAX_TEXT
    characters; a binary value is its size, its bytes being of no use on paper."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{memoryview(value).nbytes:,} bytes>"
    return _text(value_text(value))


def _text(text: str) -> str:
    """One line of at most _MAX_TEXT characters: line breaks, control characters and lone surrogates are spaces."""
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return text if text.isprintable() else _UNPRINTABLE.sub(" ", text)


def _number(value: object) -> float | None:
    """A chart's value: numbers only (not booleans); None for anything else, NaN, infinities and huge numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) and abs(number) < 1e100 else None


def _numeric_columns(rows: Sequence[Row], width: int) -> list[bool]:
    """Columns whose values in `rows` are all numbers or NULL, some numbers: right-aligned."""
    kinds = [{type(row[c]) for row in rows} - {type(None)} for c in range(width)]
    return [bool(k) and all(issubclass(t, int | float | Decimal) and t is not bool for t in k) for k in kinds]


def _missing_message(missing: Sequence[str], columns: Sequence[str]) -> str:
    names = ", ".join(f"'{name}'" for name in missing)
    listed = ", ".join(columns[:_MAX_LABELS]) + (", …" if len(columns) > _MAX_LABELS else "")
    noun = "column" if len(missing) == 1 else "columns"
    return f"The report's chart names {noun} {names} that the query does not return; its columns are: {listed}."


def _chart(chart: Chart, points: Sequence[tuple[str, list[float | None]]], width: float) -> list[Flowable]:
    """The chart of the kept rows, and its caption. A missing value (NULL, not a number, NaN, infinite) is 0 in a bar
    chart; a line chart leaves it out, its line joining the points either side."""
    bars = chart.type is ChartType.BAR
    shown = points[:MAX_BARS] if bars else points
    caption = f"{chart.type.value.capitalize()} chart of {', '.join(chart.y)} by {chart.x}"
    caption += f" (first {MAX_BARS} categories)" if len(shown) < len(points) else ""
    series = [[point[1][s] for point in shown] for s in range(len(chart.y))]
    if not any(value is not None for values in series for value in values):
        return [Paragraph(escape(_text(caption + " (no numbers to draw)")), _STYLES["caption"]), Spacer(0, 6)]
    labels = [point[0] for point in shown]
    plot = _bar_plot(labels, series) if bars else _line_plot(labels, series)
    plot.x, plot.y, plot.width, plot.height = 40, 42, width - _LEGEND_WIDTH - 50, _CHART_HEIGHT - 52
    legend = Legend()
    legend.x, legend.y, legend.boxAnchor, legend.alignment = (
        width - _LEGEND_WIDTH + 10,
        _CHART_HEIGHT - 10,
        "nw",
        "right",
    )
    legend.fontName, legend.fontSize, legend.columnMaximum = _REGULAR, 7, 10
    legend.colorNamePairs = [(_colour(i), fit_text(_text(name), _REGULAR, 7, 90)) for i, name in enumerate(chart.y)]
    drawing = Drawing(width, _CHART_HEIGHT)
    drawing.add(plot)
    drawing.add(legend)
    return [drawing, Paragraph(escape(_text(caption)), _STYLES["caption"]), Spacer(0, 8)]


def _bar_plot(labels: list[str], series: list[list[float | None]]) -> VerticalBarChart:
    """One category per label, the labels of at most _MAX_LABELS of them written."""
    plot = VerticalBarChart()
    plot.data = [[value or 0.0 for value in values] for values in series]
    step = math.ceil(len(labels) / _MAX_LABELS)
    plot.categoryAxis.categoryNames = [_label(label) if i % step == 0 else "" for i, label in enumerate(labels)]
    plot.categoryAxis.visibleTicks = len(labels) <= _MAX_LABELS
    plot.barSpacing, plot.groupSpacing = 0, 2 if len(labels) > _MAX_LABELS else 5
    for index in range(len(series)):
        plot.bars[index].fillColor, plot.bars[index].strokeColor = _colour(index), None
    _style_axes(plot.categoryAxis, plot.valueAxis)
    # A bar's length is its value: the axis starts at zero (ends there when every value is negative), or the bars'
    # lengths would compare their distances from an arbitrary baseline.
    values = [value for row in plot.data for value in row]
    if values and min(values) >= 0:
        plot.valueAxis.valueMin = 0
    elif values and max(values) <= 0:
        plot.valueAxis.valueMax = 0
    return plot


def _line_plot(labels: list[str], series: list[list[float | None]]) -> LinePlot:
    """The points at x = 0, 1, 2, ... (their row), at most _MAX_LABELS of them labelled: a category axis would make a
    label for every point. A series with no numbers has no line."""
    plot = LinePlot()
    drawn = [(index, [(x, y) for x, y in enumerate(values) if y is not None]) for index, values in enumerate(series)]
    drawn = [(index, line) for index, line in drawn if line]
    plot.data = [line for _, line in drawn]
    for position, (index, _) in enumerate(drawn):
        plot.lines[position].strokeColor, plot.lines[position].strokeWidth = (
            _colour(index),
            1.5 if len(labels) <= 500 else 0.75,
        )
    axis = plot.xValueAxis
    axis.valueMin, axis.valueMax = 0, max(len(labels) - 1, 1)
    axis.valueSteps = list(range(0, len(labels), math.ceil(len(labels) / _MAX_LABELS)))
    axis.labelTextFormat = lambda x: _label(labels[int(x)]) if 0 <= int(x) < len(labels) else ""
    _style_axes(axis, plot.yValueAxis)
    return plot


def _colour(index: int) -> Any:
    return _PALETTE[index % len(_PALETTE)]


def _label(text: str) -> str:
    return fit_text(text, _REGULAR, 6, 60)


def _style_axes(x_axis: Any, y_axis: Any) -> None:
    x_axis.labels.fontName, x_axis.labels.fontSize, x_axis.labels.angle = _REGULAR, 6, 30
    x_axis.labels.boxAnchor, x_axis.labels.textAnchor = "ne", "end"
    y_axis.labels.fontName, y_axis.labels.fontSize = _REGULAR, 6
    y_axis.visibleGrid, y_axis.gridStrokeColor, y_axis.gridStrokeWidth = True, _RULE, 0.25


class _NumberedCanvas(Canvas):  # type: ignore[misc]
    """A canvas that holds its pages until the end, to write "Page N of M" and the report's name in each footer."""

    def __init__(self, *args: Any, footer: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer = footer
        self._page_width = float(kwargs.get("pagesize", A4)[0])
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        footer = fit_text(_text(self._footer), _REGULAR, 7, self._page_width / 2)
        for page in self._pages:
            self.__dict__.update(page)
            self.setFont(_REGULAR, 7)
            self.setFillColor(colors.grey)
            self.drawString(_MARGIN, _MARGIN / 2, footer)
            self.drawRightString(self._page_width - _MARGIN, _MARGIN / 2, f"Page {self.getPageNumber()} of {total}")
            super().showPage()
        super().save()


@cache
def _register_fonts() -> None:
    """Bitstream Vera, which reportlab ships, as a TrueType font embedded as a subset: unlike the standard PDF fonts it
    writes any character (a box for one it lacks) and maps the text back to Unicode for copy and search."""
    folder = os.path.join(os.path.dirname(reportlab.__file__), "fonts")
    pdfmetrics.registerFont(TTFont(_REGULAR, os.path.join(folder, "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(_BOLD, os.path.join(folder, "VeraBd.ttf")))
    pdfmetrics.registerFontFamily(_REGULAR, normal=_REGULAR, bold=_BOLD, italic=_REGULAR, boldItalic=_BOLD)


@cache
def _advances(font: str) -> tuple[float, float]:
    """The narrowest and the widest character of `font` (of those with a width), per point of size."""
    face = pdfmetrics.getFont(font).face
    widths = [width for width in (*face.charWidths.values(), face.defaultWidth) if width > 0]
    return min(widths) / 1000, max(widths) / 1000


_STYLES = {
    "title": ParagraphStyle("title", fontName=_BOLD, fontSize=14, leading=18, spaceAfter=4),
    "body": ParagraphStyle("body", fontName=_REGULAR, fontSize=8, leading=10.5),
    "caption": ParagraphStyle("caption", fontName=_REGULAR, fontSize=7.5, leading=10, textColor=colors.dimgrey),
}
