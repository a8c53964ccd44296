"""The encoder of each output format of `domain.formats.OUTPUT_FORMATS`, by name; start-up checks that the two match."""

from __future__ import annotations

from functools import partial
from importlib.util import find_spec

from application.ports import RowEncoderFactory
from infrastructure.encoders import CsvEncoder, JsonEncoder, NdjsonEncoder
from infrastructure.pdf import PdfEncoder
from infrastructure.xlsx import XlsxEncoder

PDF_MAX_ROWS = 10_000

OPTIONAL_ENCODERS: dict[str, tuple[str, str]] = {"parquet": ("pyarrow", "parquet")}
"""Formats whose encoder needs a library that is an optional install: the module it imports, and the extra that
installs it (`pip install 'reportgen[parquet]'`). Without it the format has no encoder: a generate request for it
is a 422 saying so."""


def installed_encoders(*, pdf_max_rows: int = PDF_MAX_ROWS) -> dict[str, RowEncoderFactory]:
    """The encoder of each format whose libraries are installed."""
    encoders: dict[str, RowEncoderFactory] = {
        "csv": CsvEncoder,
        "json": JsonEncoder,
        "ndjson": NdjsonEncoder,
        "xlsx": XlsxEncoder,
        "pdf": partial(PdfEncoder, max_rows=pdf_max_rows),
    }
    if find_spec(OPTIONAL_ENCODERS["parquet"][0]) is not None:
        from infrastructure.parquet import ParquetEncoder  # only when pyarrow is installed

        encoders["parquet"] = ParquetEncoder
    return encoders
