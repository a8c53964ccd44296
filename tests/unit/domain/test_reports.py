from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.errors import InvalidParameters, InvalidReportDefinition, ReportNotAsyncDeliverable
from domain.jobs import JobExecutionLog
from domain.reports import MAX_CHART_SERIES, Chart, ChartType, ParameterType, ReportConfiguration, ReportParameter


def make_report(**changes: object) -> ReportConfiguration:
    fields: dict[str, object] = {
        "id": uuid4(),
        "name": "Sales",
        "query": "SELECT * FROM sales WHERE (:region IS NULL OR region = :region) AND sold_on >= :since",
        "parameters": (
            ReportParameter("region", ParameterType.STRING),
            ReportParameter("since", ParameterType.DATE, required=True),
            ReportParameter("limit", ParameterType.INTEGER, default=10),
        ),
        "formats": ("csv", "json"),
    }
    fields.update(changes)
    return ReportConfiguration(**fields)  # type: ignore[arg-type]


def field_names(
    exc: pytest.ExceptionInfo[InvalidParameters] | pytest.ExceptionInfo[InvalidReportDefinition],
) -> set[str]:
    return {e.field for e in exc.value.errors}


def test_resolve_applies_defaults_and_first_format() -> None:
    resolved = make_report().resolve({"since": "2026-01-01"}, None)
    assert resolved.format == "csv"
    assert resolved.parameters == {"region": None, "since": "2026-01-01", "limit": 10}
    assert resolved.parameter_types["since"] is ParameterType.DATE


def test_resolve_names_every_offending_field() -> None:
    with pytest.raises(InvalidParameters) as exc:
        make_report().resolve({"since": "yesterday", "limit": "ten", "colour": "red"}, "xlsx")
    assert field_names(exc) == {"format", "parameters.colour", "parameters.since", "parameters.limit"}


def test_missing_required_parameter_is_invalid() -> None:
    with pytest.raises(InvalidParameters) as exc:
        make_report().resolve({}, "json")
    assert field_names(exc) == {"parameters.since"}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ParameterType.INTEGER, True),
        (ParameterType.INTEGER, 1.5),
        (ParameterType.NUMBER, "1"),
        (ParameterType.BOOLEAN, 1),
        (ParameterType.STRING, 3),
        (ParameterType.DATE, "2026-02-30"),
        (ParameterType.DATE, "2026-1-1"),
    ],
)
def test_mistyped_values_are_rejected(kind: ParameterType, value: object) -> None:
    with pytest.raises(ValueError, match="must"):
        ReportParameter("p", kind).coerce(value)


def test_numbers_accept_integers_and_floats() -> None:
    assert ReportParameter("p", ParameterType.NUMBER).coerce(2) == 2
    assert ReportParameter("p", ParameterType.NUMBER).coerce(2.5) == 2.5


def test_report_for_email_delivery_is_not_async_deliverable() -> None:
    with pytest.raises(ReportNotAsyncDeliverable):
        make_report(delivery_target="EMAIL").ensure_async_api_delivery()
    with pytest.raises(ReportNotAsyncDeliverable):
        make_report(async_enabled=False).ensure_async_api_delivery()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"query": "DELETE FROM sales"}, "query"),
        ({"query": "SELECT 1; DROP TABLE sales"}, "query"),
        ({"query": "SELECT :undeclared"}, "query"),
        ({"formats": ()}, "formats"),
        ({"formats": ("docx",)}, "formats"),
        ({"name": " "}, "name"),
        ({"parameters": (ReportParameter("1bad", ParameterType.STRING),)}, "parameters[0].name"),
        ({"parameters": (ReportParameter("n", ParameterType.INTEGER, default="x"),)}, "parameters[0].default"),
        ({"delivery_target": "api response"}, "deliveryTarget"),
    ],
)
def test_invalid_definitions_are_refused(changes: dict[str, object], field: str) -> None:
    base = {"query": "SELECT 1", "parameters": ()}
    with pytest.raises(InvalidReportDefinition) as exc:
        make_report(**{**base, **changes})
    assert field in field_names(exc)


def test_casts_comments_and_trailing_semicolon_are_accepted() -> None:
    report = make_report(query="-- sales\n/* all */ WITH x AS (SELECT 1::int AS n) SELECT n FROM x;", parameters=())
    assert report.query.endswith(";")


def test_a_chart_names_at_least_one_series_and_no_series_twice() -> None:
    for chart, field in [
        (Chart(ChartType.BAR, "day", ()), "chart.y"),
        (Chart(ChartType.BAR, "day", ("n", "n")), "chart.y"),
        (Chart(ChartType.LINE, " ", ("n",)), "chart.x"),
        (Chart(ChartType.LINE, "day", tuple(f"c{i}" for i in range(MAX_CHART_SERIES + 1))), "chart.y"),
    ]:
        with pytest.raises(InvalidReportDefinition) as exc:
            make_report(chart=chart)
        assert field_names(exc) == {field}


def test_a_chart_says_which_of_its_columns_a_query_does_not_return() -> None:
    chart = Chart(ChartType.BAR, "region", ("amount", "tax"))

    assert chart.missing_columns(["region", "amount", "tax"]) == []
    assert chart.missing_columns(["amount"]) == ["region", "tax"]


def test_a_job_keeps_the_output_options_of_its_report_as_they_were_when_it_was_accepted() -> None:
    report = make_report(chart=Chart(ChartType.LINE, "day", ("n",)), csv_formula_escape=True)
    job = JobExecutionLog.queue(
        job_id=uuid4(),
        report=report,
        request=report.resolve({"since": "2026-01-01"}, None),
        owner_id="alice",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )

    report.chart, report.csv_formula_escape = None, False

    assert (job.chart, job.csv_formula_escape) == (Chart(ChartType.LINE, "day", ("n",)), True)
