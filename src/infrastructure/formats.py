"""The encoder of each output format of `domain.formats.OUTPUT_FORMATS`, by name; start-up checks that the two match.

The encoders of the file formats import their libraries (reportlab, rustpy-xlsxwriter, pyarrow) when the first job of
their format runs, not when a process starts: most processes (the API's, most workers) never need them, and they
would add most of a second to every start.
"""

from __future__ import annotations

from importlib.util import find_spec

from application.ports import RenderContext, RowEncoder, RowEncoderFactory
from infrastructure.encoders import CsvEncoder, JsonEncoder, NdjsonEncoder

PDF_MAX_ROWS = 10_000

OPTIONAL_ENCODERS: dict[str, tuple[str, str]] = {"parquet": ("pyarrow", "parquet")}
"""Formats whose encoder needs a library that is an optional install: the module it imports, and the extra that
installs it (`pip install 'reportgen[parquet]'`). Without it the format has no encoder: a generate request for it
is a 422 saying so."""


def installed_encoders(*, pdf_max_rows: int = PDF_MAX_ROWS) -> dict[str, RowEncoderFactory]:
    """The encoder of each format whose libraries are installed."""

    def xlsx(context: RenderContext) -> RowEncoder:
        from infrastructure.xlsx import XlsxEncoder

        return XlsxEncoder(context)

    def pdf(context: RenderContext) -> RowEncoder:
        from infrastructure.pdf import PdfEncoder

        return PdfEncoder(context, max_rows=pdf_max_rows)

    def parquet(context: RenderContext) -> RowEncoder:
        from infrastructure.parquet import ParquetEncoder

        return ParquetEncoder(context)

    encoders: dict[str, RowEncoderFactory] = {
        "csv": CsvEncoder,
        "json": JsonEncoder,
        "ndjson": NdjsonEncoder,
        "xlsx": xlsx,
        "pdf": pdf,
    }
    if find_spec(OPTIONAL_ENCODERS["parquet"][0]) is not None:
        encoders["parquet"] = parquet
    return encoders
