"""The API's format enum, the formats it accepts and the results it serves all follow the domain's registry."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.formats import FORMAT_NAMES, OUTPUT_FORMATS, OutputFormat
from tests.unit.api.conftest import Backend, Client


async def test_openapi_document_enumerates_the_registered_formats(client: Client) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    names = list(FORMAT_NAMES)

    assert schemas["GenerateIn"]["properties"]["format"]["enum"] == [*names, None]
    assert schemas["ReportIn"]["properties"]["formats"]["items"]["enum"] == names
    assert schemas["ReportOut"]["properties"]["formats"]["items"]["enum"] == names
    assert schemas["JobStatusOut"]["properties"]["format"]["enum"] == names


async def test_a_report_may_allow_every_registered_format(client: Client, admin: dict[str, str]) -> None:
    body = {"name": "All formats", "query": "SELECT 1 AS one", "formats": list(FORMAT_NAMES)}

    response = await client.post("/api/v1/reports", json=body, headers=admin)

    assert response.status_code == 201
    assert response.json()["formats"] == list(FORMAT_NAMES)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS, ids=FORMAT_NAMES)
async def test_a_job_in_each_registered_format_is_accepted_and_its_result_typed_by_it(
    client: Client, backend: Backend, alice: dict[str, str], fmt: OutputFormat
) -> None:
    report = backend.add_report(formats=FORMAT_NAMES)
    generate = {"parameters": {"region": "EU"}, "format": fmt.name}
    job_id = (await client.post(f"/api/v1/reports/{report.id}/generate", json=generate, headers=alice)).json()["jobId"]
    backend.succeed(backend.db.jobs[UUID(job_id)], b"rows")

    response = await client.get(f"/api/v1/jobs/{job_id}/result", headers=alice)

    assert response.status_code == 200
    assert response.headers["content-type"] == fmt.media_type
    assert response.headers["content-disposition"].endswith(f'.{fmt.extension}"')
