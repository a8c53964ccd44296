"""One large artifact through one store, in a process of its own so that its peak RSS is the store's alone.

`python -m bench.object_store_child local|s3 <bytes> <dir or s3 url>` writes `<bytes>` in 1 MiB chunks through the
artifact store (as a worker does), reads it back whole (as a download does) and prints one JSON object.
Object-store credentials and endpoint come from the environment (AWS_*).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from application.ports import ArtifactStore
from infrastructure.artifacts import FileSystemArtifactStore
from infrastructure.object_store import ObjectStoreArtifactStore, s3_store

CHUNK = 1 << 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(store: ArtifactStore, size: int) -> dict[str, float]:
    block = os.urandom(CHUNK)
    before = peak_rss_mb()
    started = time.perf_counter()
    async with store.create("bench/attempt-1.csv") as sink:
        for _ in range(size // CHUNK):
            await sink.write(block)
    written = time.perf_counter() - started
    after_write = peak_rss_mb()
    digest, read = hashlib.sha256(), 0
    started = time.perf_counter()
    async for chunk in store.read("bench/attempt-1.csv"):
        digest.update(chunk)
        read += len(chunk)
    read_seconds = time.perf_counter() - started
    assert read == size, (read, size)  # noqa: S101 - a bench's own sanity check
    assert digest.hexdigest() == sink.sha256  # noqa: S101
    await store.delete("bench/attempt-1.csv")
    mib = size / CHUNK
    return {
        "bytes": size,
        "write_seconds": round(written, 2),
        "write_mib_per_second": round(mib / written, 1),
        "read_seconds": round(read_seconds, 2),
        "read_mib_per_second": round(mib / read_seconds, 1),
        "rss_mb_before": round(before, 1),
        "peak_rss_mb_after_write": round(after_write, 1),
        "peak_rss_mb_after_read": round(peak_rss_mb(), 1),
    }


def main() -> None:
    kind, size, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store: ArtifactStore
    if kind == "s3":
        store = ObjectStoreArtifactStore(s3_store(where, os.environ))
    else:
        store = FileSystemArtifactStore(Path(where))
    print(json.dumps(asyncio.run(measure(store, size))))  # noqa: T201


if __name__ == "__main__":
    main()
