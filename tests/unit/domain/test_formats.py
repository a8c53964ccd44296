"""The registry of output formats is the one list the domain's format rules follow."""

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.errors import FieldError, InvalidReportDefinition
from domain.formats import DEFAULT_FORMAT, FORMAT_NAMES, OUTPUT_FORMATS, OutputFormat
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def report_in(*formats: str) -> ReportConfiguration:
    return ReportConfiguration(id=uuid4(), name="Sales by region", query="SELECT 1 AS one", formats=formats)


def job_in(output_format: str) -> JobExecutionLog:
    report = report_in(*FORMAT_NAMES)
    request = report.resolve({}, output_format)
    return JobExecutionLog.queue(job_id=uuid4(), report=report, request=request, owner_id="alice", now=NOW)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS, ids=FORMAT_NAMES)
def test_a_job_in_a_registered_format_has_its_media_type_and_extension(fmt: OutputFormat) -> None:
    job = job_in(fmt.name)

    assert job.format == fmt.name
    assert job.content_type == fmt.media_type
    assert job.filename == f"sales-by-region-{str(job.id)[:8]}.{fmt.extension}"


def test_a_report_may_allow_exactly_the_registered_formats() -> None:
    assert report_in(*FORMAT_NAMES).formats == FORMAT_NAMES

    with pytest.raises(InvalidReportDefinition) as exc:
        report_in(*FORMAT_NAMES, "xls")

    supported = ", ".join(FORMAT_NAMES)
    assert exc.value.errors == [FieldError("formats", f"unsupported format 'xls'; supported: {supported}")]


def test_a_report_that_names_no_format_gets_the_default_which_is_registered() -> None:
    report = ReportConfiguration(id=uuid4(), name="Sales", query="SELECT 1 AS one")

    assert report.formats == (DEFAULT_FORMAT,)
    assert DEFAULT_FORMAT in FORMAT_NAMES


def test_registered_format_names_are_unique() -> None:
    assert len(set(FORMAT_NAMES)) == len(OUTPUT_FORMATS)


def test_a_job_whose_format_has_left_the_registry_is_still_served_as_bytes() -> None:
    job = replace(job_in(DEFAULT_FORMAT), format="xls")

    assert job.content_type == "application/octet-stream"
    assert job.filename.endswith(".xls")
