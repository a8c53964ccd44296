"""Output formats: the one list of the formats a report can be generated in, and what a result of each one is.

Everything else follows from `OUTPUT_FORMATS`: the formats a report may allow, a result's `Content-Type` and file
name, the API's enum of format names. Adding a format is one entry here and its encoder in
`infrastructure.formats.installed_encoders`; start-up refuses a format without an encoder (unless its library is an
optional install: `OPTIONAL_ENCODERS`), or an encoder without a format.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """A format as clients name it (`format`, `formats`), with the media type and extension of its results."""

    name: str
    media_type: str
    extension: str


OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("csv", "text/csv; charset=utf-8", "csv"),
    OutputFormat("json", "application/json", "json"),
    OutputFormat("ndjson", "application/x-ndjson", "ndjson"),
    OutputFormat("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    OutputFormat("pdf", "application/pdf", "pdf"),
    OutputFormat("parquet", "application/vnd.apache.parquet", "parquet"),
)

FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in OUTPUT_FORMATS)
DEFAULT_FORMAT = "csv"
"""The format of a report whose definition names none."""

# A job keeps its format name; one whose format was since removed is still served, as bytes.
_UNKNOWN_MEDIA_TYPE = "application/octet-stream"
_BY_NAME = {f.name: f for f in OUTPUT_FORMATS}


def media_type_of(name: str) -> str:
    known = _BY_NAME.get(name)
    return known.media_type if known else _UNKNOWN_MEDIA_TYPE


def extension_of(name: str) -> str:
    known = _BY_NAME.get(name)
    return known.extension if known else name
