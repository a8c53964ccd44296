"""Artifacts in S3-compatible object storage (AWS S3, MinIO, Ceph, Garage, R2), through obstore.

An artifact streams into a multipart upload as it is produced (a part per `part_bytes`, at most `max_concurrency`
parts in flight: memory is bounded, no local disk is used) and becomes visible only when the upload completes.
An artifact smaller than one part is a single PUT. A failed or cancelled write aborts its upload; a worker killed
mid-upload leaves an incomplete upload that no reader sees and that the bucket's lifecycle rule
(`AbortIncompleteMultipartUpload`, see the README) removes.

Reads are ranged GETs of `read_chunk_bytes` each, read whole before they are handed on: each request is short
whatever the client's pace, and a slow client holds at most one chunk in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from application.errors import ArtifactMissing, ArtifactStoreUnavailable
from application.ports import ArtifactLabel, ArtifactSink, ArtifactStore
from infrastructure.artifacts import BufferedSink

if TYPE_CHECKING:
    from obstore import AsyncWritableFile
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

PART_BYTES = 8 << 20
"""Bytes of one multipart part (S3's minimum is 5 MiB, except for the last)."""
MAX_CONCURRENCY = 4
"""Parts uploaded at once by one artifact: with PART_BYTES, at most about 40 MiB of one artifact in memory."""
HASH_BYTES = 1 << 20
"""Bytes gathered before they are hashed (in a thread) and handed to the upload."""
READ_CHUNK_BYTES = 4 << 20

_CREDENTIALS_AND_REGION = {
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_REGION": "region",
    "AWS_DEFAULT_REGION": "default_region",
}
"""Each variable and the store's option it sets."""
_ENDPOINTS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""S3's own endpoint variable wins over the general one, as in the AWS SDKs."""
AWS_VARIABLES = frozenset((*_CREDENTIALS_AND_REGION, *_ENDPOINTS))
"""The standard AWS variables the store is configured by, read as the AWS SDKs read them; obstore reads the others
it knows (web identity, container credentials, ...) from the process environment itself."""

CLIENT_OPTIONS: ClientConfig = {
    "connect_timeout": "5s",
    "timeout": "120s",  # one request: a part's upload or a read chunk, never a whole artifact
    "pool_idle_timeout": "60s",
}
RETRY_CONFIG: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}
"""Transient errors are retried a little; past that the store is unavailable (a 503, or the attempt retried later):
a request must not hang for the client's default of minutes."""


def s3_store(url: str, env: Mapping[str, str]) -> S3Store:
    """The store for `s3://bucket[/prefix]`, configured from the standard AWS variables in `env`.

    The endpoint is `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (S3-compatible servers), else AWS's own; plain
    http is allowed only when the endpoint says http.
    """
    parts = urlsplit(url)
    config = cast("S3Config", {option: env[name] for name, option in _CREDENTIALS_AND_REGION.items() if env.get(name)})
    endpoint = next((env[name] for name in _ENDPOINTS if env.get(name)), None)
    options: ClientConfig = {**CLIENT_OPTIONS}
    if endpoint:
        config["endpoint"] = endpoint
        options["allow_http"] = endpoint.startswith("http://")
    prefix = parts.path.strip("/") or None
    return S3Store(parts.netloc, prefix=prefix, config=config, client_options=options, retry_config=RETRY_CONFIG)


class _ObjectSink(BufferedSink):
    """Hashes what is written and hands it to the upload in blocks of HASH_BYTES."""

    def __init__(self, upload: AsyncWritableFile, key: str) -> None:
        super().__init__(HASH_BYTES)
        self._upload = upload
        self._key = key

    async def flush(self) -> None:
        """Hand on what is buffered (the last block, shorter than the others)."""
        block = self._take()
        if block:
            await self._hand_on(block)

    async def _hand_on(self, block: bytearray) -> None:
        await asyncio.to_thread(self._hash.update, block)  # hashlib releases the GIL for large blocks
        with _unavailable_on_store_errors(self._key):
            await self._upload.write(bytes(block))


class ObjectStoreArtifactStore(ArtifactStore):
    """Artifacts as objects named `<prefix>/<key>` in an obstore store (S3 in production; any obstore store works).

    Every error of the store other than a missing object (unreachable, refused credentials, throttled) is
    `ArtifactStoreUnavailable`, with the store's message for the log.
    """

    def __init__(
        self,
        store: obstore.store.ObjectStore,
        *,
        part_bytes: int = PART_BYTES,
        max_concurrency: int = MAX_CONCURRENCY,
        read_chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self._store = store
        self._part_bytes = part_bytes
        self._max_concurrency = max_concurrency
        self._read_chunk_bytes = read_chunk_bytes

    def create(self, key: str, label: ArtifactLabel | None = None) -> AbstractAsyncContextManager[ArtifactSink]:
        return self._create(_checked(key), label)

    @asynccontextmanager
    async def _create(self, key: str, label: ArtifactLabel | None) -> AsyncIterator[ArtifactSink]:
        attributes: Any = None
        if label is not None:
            attributes = {
                "Content-Type": label.media_type,
                "Content-Disposition": f'attachment; filename="{label.filename}"',
            }
        with _unavailable_on_store_errors(key):
            upload = obstore.open_writer_async(
                self._store,
                key,
                attributes=attributes,
                buffer_size=self._part_bytes,
                max_concurrency=self._max_concurrency,
            )
        sink = _ObjectSink(upload, key)
        closing = completed = False
        try:
            yield sink
            await sink.flush()
            closing = True
            with _unavailable_on_store_errors(key):
                await upload.close()  # completes the upload (or puts a small object): now it is visible
            completed = True
        finally:
            if not completed:
                await asyncio.shield(self._abandon(upload, key, published=closing))

    async def _abandon(self, upload: AsyncWritableFile, key: str, *, published: bool) -> None:
        """Abort an upload that will not be recorded; if it was being completed when this attempt failed or was
        cancelled, the object may be visible: delete it (nothing will ever refer to it)."""
        try:
            if published:
                await obstore.delete_async(self._store, key)
            else:
                await upload.__aexit__(_Abandoned, _Abandoned(), None)  # with an error, the writer aborts
        except (BaseError, OSError) as exc:
            log.warning("could not abort the upload of %s: %s", key, _message(exc))

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        key = _checked(key)
        if length is None:
            with _unavailable_on_store_errors(key):
                end = (await obstore.head_async(self._store, key))["size"]
        else:
            end = offset + length
        position = offset
        while position < end:
            with _unavailable_on_store_errors(key):
                chunk = await obstore.get_range_async(
                    self._store, key, start=position, end=min(end, position + self._read_chunk_bytes)
                )
            if not len(chunk):  # the object shrank under us: it was replaced or is being deleted
                break
            position += len(chunk)
            yield bytes(chunk)

    async def exists(self, key: str) -> bool:
        key = _checked(key)
        try:
            with _unavailable_on_store_errors(key):
                await obstore.head_async(self._store, key)
        except ArtifactMissing:
            return False
        return True

    async def delete(self, key: str) -> None:
        key = _checked(key)
        try:
            with _unavailable_on_store_errors(key):
                await obstore.delete_async(self._store, key)
        except ArtifactMissing:  # S3 answers 204 for a missing key; other stores may say 404
            return

    async def sweep_temporary(self, older_than_seconds: float) -> int:
        """Nothing to sweep here: an unfinished upload is invisible, and the bucket's lifecycle rule removes the
        parts of one whose worker died (obstore cannot list incomplete uploads)."""
        return 0

    async def link(self, key: str, expires_in: timedelta) -> str | None:
        key = _checked(key)
        if not isinstance(self._store, S3Store):
            return None
        with _unavailable_on_store_errors(key):
            url: str = await obstore.sign_async(self._store, "GET", key, expires_in)
        return url


def _checked(key: str) -> str:
    """Keys are relative paths without empty, `.` or `..` segments, as on the file system."""
    parts = key.split("/")
    if "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid artifact key: {key!r}")
    return key


@contextmanager
def _unavailable_on_store_errors(key: str) -> Iterator[None]:
    """Turn the store's errors into the application's: a missing object is ArtifactMissing, anything else
    ArtifactStoreUnavailable (logged with the store's own message, which the client never sees)."""
    try:
        yield
    except FileNotFoundError:  # obstore's NotFoundError
        raise ArtifactMissing(key) from None
    except (BaseError, OSError, TimeoutError) as error:
        log.warning("artifact store error on %s: %s", key, _message(error))
        raise ArtifactStoreUnavailable(f"the artifact store failed on {key}") from error


class _Abandoned(Exception):
    """Handed to the writer's exit to make it abort its upload."""


def _message(error: BaseException) -> str:
    """The store's message without the Rust debug dump that follows it."""
    return str(error).split("\n\nDebug source")[0]
