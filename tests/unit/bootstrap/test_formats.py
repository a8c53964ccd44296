"""Start-up refuses a build whose registered output formats and encoders are not the same set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from application.ports import RenderContext, RowEncoderFactory
from bootstrap.formats import OutputFormatMismatch, encoders_for
from domain.formats import FORMAT_NAMES, OUTPUT_FORMATS, OutputFormat
from infrastructure.encoders import JsonEncoder
from infrastructure.formats import installed_encoders

TSV = OutputFormat("tsv", "text/tab-separated-values", "tsv")
ENCODERS = installed_encoders()


def test_every_registered_format_has_its_encoder() -> None:
    assert list(encoders_for()) == list(FORMAT_NAMES)


def test_a_format_whose_optional_library_is_not_installed_has_no_encoder_and_is_not_a_mismatch() -> None:
    without_parquet = {name: encoder for name, encoder in ENCODERS.items() if name != "parquet"}

    assert list(encoders_for(OUTPUT_FORMATS, without_parquet)) == [name for name in FORMAT_NAMES if name != "parquet"]
    with pytest.raises(OutputFormatMismatch, match="'parquet' has no encoder"):
        encoders_for(OUTPUT_FORMATS, without_parquet, optional={})


def test_a_new_format_takes_one_registered_description_and_one_encoder() -> None:
    encoders = encoders_for((*OUTPUT_FORMATS, TSV), {**ENCODERS, "tsv": JsonEncoder})

    assert list(encoders) == [*FORMAT_NAMES, "tsv"]
    assert encoders["tsv"] is JsonEncoder


@pytest.mark.parametrize(
    ("formats", "encoders", "message"),
    [
        ((*OUTPUT_FORMATS, TSV), ENCODERS, "output formats: 'tsv' has no encoder"),
        (
            OUTPUT_FORMATS,
            {**ENCODERS, "tsv": JsonEncoder},
            "output formats: the encoder 'tsv' has no registered format",
        ),
        ((*OUTPUT_FORMATS, OUTPUT_FORMATS[0]), ENCODERS, f"output formats: {FORMAT_NAMES[0]!r} is registered 2 times"),
        (
            (*OUTPUT_FORMATS, TSV),
            {**ENCODERS, "xls": JsonEncoder},
            "output formats: 'tsv' has no encoder; the encoder 'xls' has no registered format",
        ),
    ],
    ids=["format-without-encoder", "encoder-without-format", "format-twice", "both"],
)
def test_a_mismatch_is_refused_in_one_line_naming_each_format(
    formats: Sequence[OutputFormat], encoders: Mapping[str, RowEncoderFactory], message: str
) -> None:
    with pytest.raises(OutputFormatMismatch) as exc:
        encoders_for(formats, encoders)

    assert str(exc.value) == message


async def test_each_installed_encoder_writes_a_document_of_no_rows() -> None:
    context = RenderContext(title="t", parameters={}, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    for name, factory in installed_encoders(pdf_max_rows=5).items():
        encoder = factory(context)
        try:
            data = encoder.begin(["n"]) + b"".join([chunk async for chunk in encoder.end()])
        finally:
            encoder.close()
        assert data or name == "ndjson", f"{name} wrote nothing"
