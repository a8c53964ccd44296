"""GET /api/v1/jobs: the caller's jobs (admins: anyone's), newest first, filtered, a page at a time."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from domain.jobs import JobExecutionLog
from tests.unit.api.conftest import Backend, Client


def jobs_of(backend: Backend, owner: str, count: int) -> list[JobExecutionLog]:
    """`count` jobs of `owner`, one second apart, newest last."""
    report = backend.add_report()
    made = []
    for _ in range(count):
        made.append(backend.add_job(report, owner=owner))
        backend.clock.advance(1)
    return made


def ids(body: dict[str, Any]) -> list[str]:
    return [item["jobId"] for item in body["items"]]


async def test_a_user_lists_their_own_jobs_newest_first_with_the_status_body(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    mine = jobs_of(backend, "alice", 3)
    jobs_of(backend, "bob", 2)

    response = await client.get("/api/v1/jobs", headers=alice)

    assert response.status_code == 200
    body = response.json()
    assert ids(body) == [str(job.id) for job in reversed(mine)]
    assert body["nextCursor"] is None
    assert "link" not in response.headers
    status = (await client.get(f"/api/v1/jobs/{mine[-1].id}", headers=alice)).json()
    assert body["items"][0] == status


async def test_pages_follow_the_cursor_and_the_link_header_to_the_end_without_gaps_or_repeats(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    mine = jobs_of(backend, "alice", 7)
    seen: list[str] = []
    url: str | None = "/api/v1/jobs?limit=3&status=Queued"
    pages = 0
    while url is not None:
        response = await client.get(url, headers=alice)
        body = response.json()
        seen += ids(body)
        pages += 1
        link = response.headers.get("link")
        assert (link is None) == (body["nextCursor"] is None)
        if link is None:
            url = None
        else:
            url = link.removeprefix("<").split(">;")[0]
            assert parse_qs(urlsplit(url).query)["status"] == ["Queued"], "the next page keeps the filters"

    assert pages == 3
    assert seen == [str(job.id) for job in reversed(mine)]


async def test_jobs_created_at_the_same_moment_are_paged_by_id(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    same_time = [backend.add_job(report, owner="alice") for _ in range(5)]

    first = (await client.get("/api/v1/jobs?limit=2", headers=alice)).json()
    rest = (await client.get(f"/api/v1/jobs?limit=10&cursor={first['nextCursor']}", headers=alice)).json()

    assert ids(first) + ids(rest) == [str(job.id) for job in sorted(same_time, key=lambda job: job.id, reverse=True)]


async def test_filters_by_status_report_and_creation_time(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    first, second, third = jobs_of(backend, "alice", 3)
    backend.succeed(second, b"x")
    other_report = backend.add_report()
    fourth = backend.add_job(other_report, owner="alice")
    after = second.created_at.isoformat()

    succeeded = (await client.get("/api/v1/jobs?status=Succeeded", headers=alice)).json()
    either = (await client.get("/api/v1/jobs?status=Succeeded&status=Queued", headers=alice)).json()
    of_report = (await client.get(f"/api/v1/jobs?reportId={other_report.id}", headers=alice)).json()
    newer = (await client.get("/api/v1/jobs", params={"createdAfter": after}, headers=alice)).json()
    older = (await client.get("/api/v1/jobs", params={"createdBefore": after}, headers=alice)).json()

    assert ids(succeeded) == [str(second.id)]
    assert len(ids(either)) == 4
    assert ids(of_report) == [str(fourth.id)]
    assert ids(newer) == [str(fourth.id), str(third.id)]
    assert ids(older) == [str(first.id)]


async def test_an_admin_lists_everyones_jobs_or_one_owners(
    client: Client, backend: Backend, admin: dict[str, str], alice: dict[str, str]
) -> None:
    jobs_of(backend, "alice", 2)
    jobs_of(backend, "bob", 3)

    everyone = (await client.get("/api/v1/jobs", headers=admin)).json()
    bobs = (await client.get("/api/v1/jobs?ownerId=bob", headers=admin)).json()
    own = await client.get("/api/v1/jobs?ownerId=alice", headers=alice)
    someone_elses = await client.get("/api/v1/jobs?ownerId=bob", headers=alice)

    assert len(everyone["items"]) == 5
    assert len(bobs["items"]) == 3
    assert own.status_code == 200
    assert len(own.json()["items"]) == 2
    assert someone_elses.status_code == 403
    assert someone_elses.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        "cursor=not-a-cursor",
        "cursor=WyIyMDI2LTExLTI4VDEwOjAwOjAwIiwiMTIzIl0",  # valid base64 JSON, not a position
        "cursor=" + "A" * 5000,
        "limit=0",
        "limit=101",
        "status=Done",
        "reportId=42",
        "createdAfter=yesterday",
    ],
)
async def test_a_bad_query_is_a_400_problem_never_a_500(client: Client, alice: dict[str, str], query: str) -> None:
    response = await client.get(f"/api/v1/jobs?{query}", headers=alice)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_list_needs_a_token(client: Client) -> None:
    assert (await client.get("/api/v1/jobs")).status_code == 401
