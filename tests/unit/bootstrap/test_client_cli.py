"""The client commands' command line: parameters typed by the report, and what is refused before any request."""

from __future__ import annotations

import pytest

from bootstrap.cli import main
from bootstrap.client_cli import UsageError, typed_parameters
from reportgen_client import Report, ReportParameter

REPORT = Report(
    id="00000000-0000-4000-8000-000000000001",
    name="Sales",
    description="",
    parameters=(
        ReportParameter("copies", "integer", False, 25),
        ReportParameter("ratio", "number", False, None),
        ReportParameter("eu_only", "boolean", False, None),
        ReportParameter("since", "date", False, None),
        ReportParameter("region", "string", False, None),
    ),
    formats=("csv",),
    delivery_target="API_RESPONSE",
    async_enabled=True,
    raw={},
)


def test_parameters_are_sent_as_the_json_types_the_report_declares() -> None:
    pairs = ["copies=3", "ratio=0.5", "eu_only=TRUE", "since=2026-01-01", "region=a=b", "other=7"]

    assert typed_parameters(REPORT, pairs) == {
        "copies": 3,
        "ratio": 0.5,
        "eu_only": True,
        "since": "2026-01-01",
        "region": "a=b",
        "other": "7",  # undeclared: sent as text, for the server to name in its 422
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [("copies=many", "copies is an integer"), ("eu_only=yes", "eu_only is a boolean"), ("copies", "NAME=VALUE")],
)
def test_a_value_that_cannot_be_its_type_is_a_usage_error(pair: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        typed_parameters(REPORT, [pair])


def test_a_client_command_without_a_token_says_how_to_get_one_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPORTGEN_TOKEN", raising=False)

    assert main(["reports", "--url", "http://127.0.0.1:9"]) == 2
    assert "set REPORTGEN_TOKEN" in capsys.readouterr().err


def test_a_client_command_needs_none_of_the_servers_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTGEN_DATABASE_URL", "not a url")  # would stop `reportgen serve` at start

    assert main(["jobs", "--url", "http://127.0.0.1:9", "--token", "t"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reportgen: GET http://127.0.0.1:9/api/v1/jobs"), "it got as far as asking the server"
    assert "invalid configuration" not in err
