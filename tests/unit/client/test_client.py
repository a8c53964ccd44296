"""The client's own logic against a fake server: waiting without spinning, retries that are safe, typed errors,
the job list's pages."""

from __future__ import annotations

import httpx
import pytest

from reportgen_client import Client, ConfigurationError, Conflict, ConnectionFailed, NotFound, Unavailable, WaitTimeout
from tests.unit.client.fake_server import BASE, JOB_ID, REPORT_ID, FakeServer, job_body


def status(body: dict[str, object], retry_after: str | None = "2") -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(200, json=body, headers=headers)


def test_a_server_that_answers_at_once_is_asked_again_only_after_retry_after() -> None:
    server = FakeServer([lambda r: status(job_body("Running")), lambda r: status(job_body("Succeeded", 100), None)])

    job = server.client().wait_for(JOB_ID)

    assert job.status == "Succeeded"
    assert [r.url.params["wait"] for r in server.requests] == ["2", "2"]
    assert server.sleeps == [2.0], "one pause of Retry-After between the two reads, no spinning"


def test_a_server_that_waits_is_asked_again_at_once() -> None:
    server = FakeServer([])

    def waits(request: httpx.Request) -> httpx.Response:
        server.now += float(request.url.params["wait"])  # the server holds the answer that long
        return status(job_body("Running" if len(server.requests) < 3 else "Succeeded"))

    server.script = [waits]
    updates: list[str] = []
    server.client().wait_for(JOB_ID, on_update=lambda job: updates.append(job.status))

    assert updates == ["Running", "Running", "Succeeded"]
    assert server.sleeps == []


def test_a_wait_gives_up_at_its_timeout_with_the_last_status_even_when_retry_after_is_longer() -> None:
    server = FakeServer([lambda r: status(job_body("Queued", 0), retry_after="30")])

    with pytest.raises(WaitTimeout) as raised:
        server.client().wait_for(JOB_ID, timeout=5)

    assert raised.value.job.status == "Queued"
    assert sum(server.sleeps) == 5, "the pause is capped by the time left"


def test_503_is_retried_after_its_retry_after_and_429_too() -> None:
    refused = [
        lambda r: httpx.Response(503, headers={"Retry-After": "5"}, json={"type": "urn:reportgen:problem:not-ready"}),
        lambda r: httpx.Response(429, headers={"Retry-After": "3"}),
        lambda r: httpx.Response(200, json=[]),
    ]
    server = FakeServer(refused)

    assert server.client().reports() == []
    assert server.sleeps == [5.0, 3.0]


def test_retries_run_out_into_a_typed_error() -> None:
    server = FakeServer([lambda r: httpx.Response(503, headers={"Retry-After": "1"})])

    with pytest.raises(Unavailable) as raised:
        server.client(retries=2).reports()

    assert raised.value.status == 503
    assert len(server.requests) == 3


def test_a_submit_whose_answer_was_lost_is_sent_again_with_the_same_idempotency_key() -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    accepted = {"jobId": JOB_ID, "status": "Queued", "statusUrl": "s", "resultUrl": "r"}
    server = FakeServer([lost, lambda r: httpx.Response(202, json=accepted, headers={"Idempotent-Replayed": "true"})])

    submitted = server.client().submit(REPORT_ID, {"region": "EU"}, "csv")

    first, second = server.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert len(first.headers["Idempotency-Key"]) == 36
    assert first.content == second.content == b'{"parameters":{"region":"EU"},"format":"csv"}'
    assert submitted.replayed


def test_a_cancel_whose_answer_was_lost_is_not_sent_twice() -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    server = FakeServer([lost])

    with pytest.raises(ConnectionFailed):
        server.client().cancel(JOB_ID)
    assert len(server.requests) == 1


def test_problems_become_typed_errors_with_their_code_and_detail() -> None:
    problem = {
        "type": "urn:reportgen:problem:job-already-finished",
        "title": "Conflict",
        "status": 409,
        "detail": "job has already finished: its status is Succeeded",
        "jobStatus": "Succeeded",
        "requestId": "r-1",
    }
    server = FakeServer(
        [lambda r: httpx.Response(409, json=problem, headers={"Content-Type": "application/problem+json"})]
    )

    with pytest.raises(Conflict) as raised:
        server.client().cancel(JOB_ID)

    error = raised.value
    assert (error.status, error.code, error.job_status, error.request_id) == (
        409,
        "job-already-finished",
        "Succeeded",
        "r-1",
    )
    assert str(error) == "409 job-already-finished: job has already finished: its status is Succeeded"


def test_a_plain_http_error_is_named_by_its_status_phrase() -> None:
    server = FakeServer([lambda r: httpx.Response(404, json={"type": "about:blank", "title": "Not Found"})])

    with pytest.raises(NotFound) as raised:
        server.client().job(JOB_ID)

    assert raised.value.code == "not-found"


def test_the_job_list_follows_link_next_on_its_own_server_only() -> None:
    first = httpx.Response(
        200,
        json={"items": [job_body("Succeeded", 100)], "nextCursor": "abc"},
        headers={"Link": '<https://elsewhere.example/api/v1/jobs?status=Succeeded&limit=1&cursor=abc>; rel="next"'},
    )
    last = httpx.Response(200, json={"items": [job_body("Failed", 10)], "nextCursor": None})
    server = FakeServer([lambda r: first, lambda r: last])

    jobs = list(server.client().jobs(status=["Succeeded", "Failed"], page_size=1))

    assert [job.status for job in jobs] == ["Succeeded", "Failed"]
    assert str(server.requests[0].url) == f"{BASE}/api/v1/jobs?status=Succeeded&status=Failed&limit=1"
    assert str(server.requests[1].url) == f"{BASE}/api/v1/jobs?status=Succeeded&limit=1&cursor=abc"


@pytest.mark.parametrize(
    ("url", "token", "complaint"),
    [("ftp://host", "t", r"not an http\(s\) URL"), ("http://127.0.0.1:8000", "", "no token")],
)
def test_a_client_without_a_usable_url_or_token_says_which(url: str, token: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Client(url, token, env={})


def test_url_and_token_come_from_the_environment() -> None:
    with Client(env={"REPORTGEN_URL": "http://example.test:9/", "REPORTGEN_TOKEN": "abc"}) as client:
        assert client.url == "http://example.test:9"
