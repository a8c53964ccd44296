"""A real S3-compatible server on loopback for the tests: moto's server mode, started by the tests themselves.

moto's server binds 0.0.0.0 unless told otherwise: it is started on 127.0.0.1 here. It does not check signatures,
so a presigned URL's expiry is checked by reading the URL itself, not by waiting for the server to refuse it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import httpx

from tests.loopback import free_port

REGION = "us-east-1"


class S3Server:
    """One moto server process; `bucket()` makes a fresh bucket, `env(bucket)` the variables reportgen reads."""

    def __init__(self, process: subprocess.Popen[bytes], endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def bucket(self) -> str:
        name = f"reportgen-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def keys(self, bucket: str) -> list[str]:
        """Every visible object of the bucket."""
        found = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def uploads(self, bucket: str) -> list[str]:
        """The keys of the bucket's multipart uploads that were neither completed nor aborted."""
        return sorted(item["Key"] for item in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def pause(self) -> None:
        """Stop answering (SIGSTOP): connections are accepted by the kernel but nothing is served."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def s3_server(log_dir: Path) -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = Path(sys.executable).with_name("moto_server")
    log = (log_dir / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log_dir / 'moto.log'}") from None
                time.sleep(0.1)
        yield S3Server(process, endpoint)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
