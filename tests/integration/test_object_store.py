"""The object-store adapter against a real S3-compatible server (moto's server mode on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from application.errors import ArtifactMissing, ArtifactStoreUnavailable
from application.ports import ArtifactLabel
from infrastructure.object_store import ObjectStoreArtifactStore, s3_store
from tests.loopback import free_port
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

PART = 5 << 20  # S3's smallest part


def store_for(s3: S3Server, bucket: str, prefix: str = "artifacts", **kwargs: int) -> ObjectStoreArtifactStore:
    return ObjectStoreArtifactStore(s3_store(f"s3://{bucket}/{prefix}", s3.env()), part_bytes=PART, **kwargs)


async def read_all(store: ObjectStoreArtifactStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, offset, length)])


async def write(store: ObjectStoreArtifactStore, key: str, content: bytes) -> None:
    async with store.create(key) as sink:
        await sink.write(content)


async def test_a_large_artifact_streams_as_a_multipart_upload_and_reads_back_whole_and_in_ranges(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket, read_chunk_bytes=3 << 20)
    payload = os.urandom(12 << 20) + b"tail"
    async with store.create("job-1/attempt-1.csv") as sink:
        for start in range(0, len(payload), 700_000):
            await sink.write(payload[start : start + 700_000])
    assert (sink.size, sink.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    head = s3.client.head_object(Bucket=bucket, Key="artifacts/job-1/attempt-1.csv")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].endswith('-3"')  # three parts: 5 MiB, 5 MiB and the rest
    assert await read_all(store, "job-1/attempt-1.csv") == payload
    assert await read_all(store, "job-1/attempt-1.csv", 4_000_000, 6_000_000) == payload[4_000_000:10_000_000]
    assert await read_all(store, "job-1/attempt-1.csv", len(payload) - 4) == b"tail"


async def test_a_small_artifact_is_one_put_labelled_for_downloads_from_the_store(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)
    async with store.create("job-2/attempt-1.csv", ArtifactLabel("text/csv; charset=utf-8", "sales-1234.csv")) as sink:
        await sink.write(b"a,b\r\n1,2\r\n")
    head = s3.client.head_object(Bucket=bucket, Key="artifacts/job-2/attempt-1.csv")
    assert "-" not in head["ETag"]  # not a multipart upload
    assert head["ContentType"] == "text/csv; charset=utf-8"
    assert head["ContentDisposition"] == 'attachment; filename="sales-1234.csv"'
    assert await read_all(store, "job-2/attempt-1.csv") == b"a,b\r\n1,2\r\n"


async def test_an_empty_artifact_is_published(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)
    async with store.create("job-3/attempt-1.csv") as sink:
        pass
    assert sink.size == 0
    assert await store.exists("job-3/attempt-1.csv")
    assert await read_all(store, "job-3/attempt-1.csv") == b""


async def test_a_failed_write_publishes_nothing_and_aborts_its_multipart_upload(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)

    async def fail_midway() -> None:
        async with store.create("job-4/attempt-1.csv") as sink:
            await sink.write(os.urandom(11 << 20))  # two parts uploaded already
            raise RuntimeError("query failed")

    with pytest.raises(RuntimeError, match="query failed"):
        await fail_midway()
    assert s3.keys(bucket) == []
    assert s3.uploads(bucket) == []
    assert not await store.exists("job-4/attempt-1.csv")


async def test_a_cancelled_write_publishes_nothing_and_aborts_its_multipart_upload(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)
    writing = asyncio.Event()

    async def write_forever() -> None:
        async with store.create("job-5/attempt-1.csv") as sink:
            while True:
                await sink.write(os.urandom(1 << 20))
                if sink.size > 6 << 20:
                    writing.set()

    task = asyncio.create_task(write_forever())
    await asyncio.wait_for(writing.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s3.keys(bucket) == []
    assert s3.uploads(bucket) == []


async def test_a_missing_artifact_is_missing_and_deleting_it_is_harmless(s3: S3Server) -> None:
    store = store_for(s3, s3.bucket())
    assert not await store.exists("job-6/attempt-1.csv")
    with pytest.raises(ArtifactMissing):
        await read_all(store, "job-6/attempt-1.csv")
    await store.delete("job-6/attempt-1.csv")


async def test_delete_removes_the_object(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)
    async with store.create("job-7/attempt-1.json") as sink:
        await sink.write(b"[]")
    await store.delete("job-7/attempt-1.json")
    assert s3.keys(bucket) == []
    assert await store.sweep_temporary(0) == 0


async def test_keys_that_could_leave_the_prefix_are_refused(s3: S3Server) -> None:
    store = store_for(s3, s3.bucket())
    for key in ("../other/x.csv", "/abs.csv", "a//b.csv", "a/./b.csv", "a\\b.csv", ""):
        with pytest.raises(ValueError, match="invalid artifact key"):
            await store.exists(key)


async def test_the_presigned_link_serves_the_artifact_with_its_name_for_the_time_asked(s3: S3Server) -> None:
    bucket = s3.bucket()
    store = store_for(s3, bucket)
    async with store.create("job-8/attempt-1.csv", ArtifactLabel("text/csv; charset=utf-8", "sales.csv")) as sink:
        await sink.write(b"a\r\n1\r\n")
    url = await store.link("job-8/attempt-1.csv", timedelta(seconds=90))
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert urlsplit(url).path == f"/{bucket}/artifacts/job-8/attempt-1.csv"
    async with httpx.AsyncClient() as client:
        whole = await client.get(url)
        part = await client.get(url, headers={"Range": "bytes=3-"})
    assert whole.status_code == 200
    assert whole.content == b"a\r\n1\r\n"
    assert whole.headers["content-disposition"] == 'attachment; filename="sales.csv"'
    assert (part.status_code, part.content) == (206, b"1\r\n")


async def test_an_unreachable_store_is_unavailable_not_missing(caplog: pytest.LogCaptureFixture) -> None:
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"}
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = ObjectStoreArtifactStore(s3_store("s3://nowhere/prefix", env))
    with pytest.raises(ArtifactStoreUnavailable):
        await store.exists("job-9/attempt-1.csv")
    with pytest.raises(ArtifactStoreUnavailable):
        await read_all(store, "job-9/attempt-1.csv")
    with pytest.raises(ArtifactStoreUnavailable):
        await write(store, "job-9/attempt-1.csv", b"x")
    assert "artifact store error on job-9/attempt-1.csv" in caplog.text
    assert "Debug source" not in caplog.text


def test_the_endpoint_variable_of_s3_wins_over_the_general_one() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2", "AWS_REGION": "eu"}
    store = s3_store("s3://bucket/some/prefix", env)
    assert store.config["endpoint"] == "http://127.0.0.1:2"
    assert store.config["region"] == "eu"
    assert store.prefix == "some/prefix"
