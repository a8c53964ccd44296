"""The callback rules: which URLs are accepted, which addresses may be called, and that a job schedules its
callback in the very transition that ends it."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.callbacks import Callback, CallbackPolicy, CallbackStatus, is_public_address, secret_key
from domain.errors import InvalidParameters
from domain.jobs import ArtifactRef, ErrorCode, JobExecutionLog
from domain.reports import ReportConfiguration

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",  # shared (carrier-grade NAT)
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_accepted(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


POLICY = CallbackPolicy.of(["Hooks.Internal", "127.0.0.1"])


@pytest.mark.parametrize(
    "url",
    [
        "https://receiver.example/hooks",
        "https://receiver.example:8443/in?x=1",
        "http://hooks.internal/in",
        "http://127.0.0.1:9000/in",
        "https://[2606:4700:4700::1111]/in",
    ],
)
def test_https_urls_and_http_to_allowed_hosts_are_accepted(url: str) -> None:
    assert POLICY.check(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://receiver.example/hooks",
        "ws://receiver.example/",
        "https:///path-only",
        "receiver.example/hooks",
        "https://u:p@receiver.example/",
        "https://receiver.example/#frag",
        "https://10.0.0.7/in",
        "https://[::1]/in",
        "https://receiver.example:0x50/",
    ],
)
def test_other_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidParameters) as exc:
        POLICY.check(url)
    assert [error.field for error in exc.value.errors] == ["callbackUrl"]


def test_no_url_is_accepted_while_webhooks_are_disabled() -> None:
    with pytest.raises(InvalidParameters, match="not enabled"):
        CallbackPolicy.of([], enabled=False).check("https://receiver.example/")


def test_a_secret_is_whsec_and_base64_of_enough_bytes() -> None:
    key = bytes(range(24))
    assert secret_key("whsec_" + base64.b64encode(key).decode()) == key
    for bad, why in [
        (base64.b64encode(key).decode(), "starts with whsec_"),
        ("whsec_not*base64", "base64"),
        ("whsec_" + base64.b64encode(key[:16]).decode(), "at least 24 bytes"),
    ]:
        with pytest.raises(ValueError, match=why):
            secret_key(bad)


def a_job(report: ReportConfiguration, *, with_callback: bool = True) -> JobExecutionLog:
    callback = Callback(url="https://receiver.example/", status_url="https://api/jobs/1") if with_callback else None
    job = JobExecutionLog.queue(
        job_id=uuid4(), report=report, request=report.resolve({}, None), owner_id="u", now=NOW, callback=callback
    )
    job.start(NOW, NOW + timedelta(seconds=30))
    return job


def sales() -> ReportConfiguration:
    return ReportConfiguration(id=uuid4(), name="Sales", query="SELECT 1", formats=("csv",))


@pytest.mark.parametrize("end", ["succeed", "fail", "cancel", "lose_worker"])
def test_every_terminal_transition_makes_the_callback_due_at_once(end: str) -> None:
    job = a_job(sales())
    later = NOW + timedelta(seconds=7)
    if end == "succeed":
        job.succeed(later, ArtifactRef("k", 1, "0" * 64))
    elif end == "fail":
        job.fail(later, ErrorCode.REPORT_QUERY_FAILED, "bad")
    elif end == "cancel":
        job.cancel(later)
    else:
        job.release_from_lost_worker(later, max_attempts=1)

    assert job.callback is not None
    assert (job.callback.status, job.callback.next_attempt_at, job.callback.attempts) == (
        CallbackStatus.PENDING,
        later,
        0,
    )


def test_a_job_handed_back_to_the_queue_keeps_its_callback_waiting() -> None:
    job = a_job(sales())
    job.requeue()

    assert job.callback is not None
    assert job.callback.status is CallbackStatus.WAITING


def test_a_job_without_a_callback_ends_without_one() -> None:
    job = a_job(sales(), with_callback=False)
    job.cancel(NOW)
    assert job.callback is None


def test_the_webhook_id_is_fixed_per_job() -> None:
    job = a_job(sales())
    assert job.webhook_id == f"msg_{job.id}"
