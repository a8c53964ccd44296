"""A resumed download against a fake server: the rest is asked for with Range and If-Range after a dropped
connection, a 200 instead of a 206 starts the file over, and only a file of the artifact's size and SHA-256 is
kept. (A real cut connection against a real server: tests/e2e/test_client.py.)"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reportgen_client import DownloadError
from tests.unit.client.fake_server import JOB_ID, FakeServer

ARTIFACT = bytes(range(256)) * 400  # 102,400 bytes
ETAG = f'"{hashlib.sha256(ARTIFACT).hexdigest()}"'
HEADERS = {"ETag": ETAG, "Content-Disposition": 'attachment; filename="sales-7c927bcb.csv"', "Accept-Ranges": "bytes"}


class Dropped(httpx.SyncByteStream):
    """A body that breaks after `limit` bytes, as a connection cut mid-download does."""

    def __init__(self, body: bytes, limit: int) -> None:
        self.body, self.limit = body, limit

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[: self.limit]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def whole(request: httpx.Request, cut_after: int | None = None) -> httpx.Response:
    headers = {**HEADERS, "Content-Length": str(len(ARTIFACT))}
    if cut_after is None:
        return httpx.Response(200, headers=headers, content=ARTIFACT)
    return httpx.Response(200, headers=headers, stream=Dropped(ARTIFACT, cut_after))


def ranged(request: httpx.Request, body: bytes = ARTIFACT) -> httpx.Response:
    match = re.fullmatch(r"bytes=(\d+)-", request.headers["Range"])
    assert match
    start = int(match.group(1))
    headers = {**HEADERS, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
    return httpx.Response(206, headers=headers, content=body[start:])


def test_a_dropped_connection_is_resumed_from_the_bytes_kept(tmp_path: Path) -> None:
    server = FakeServer([lambda r: whole(r, cut_after=40_000), ranged])
    seen: list[tuple[int, int | None]] = []

    path = server.client().download(JOB_ID, tmp_path / "out.csv", on_progress=lambda d, t: seen.append((d, t)))

    assert path.read_bytes() == ARTIFACT
    first, second = server.requests
    assert "Range" not in first.headers
    assert (second.headers["Range"], second.headers["If-Range"]) == ("bytes=40000-", ETAG)
    assert second.headers["Accept-Encoding"] == "identity"
    assert (40_000, len(ARTIFACT)) in seen
    assert seen[-1] == (len(ARTIFACT), len(ARTIFACT))
    assert not (tmp_path / "out.csv.part").exists()


def test_a_200_to_a_ranged_request_starts_the_file_over(tmp_path: Path) -> None:
    server = FakeServer([lambda r: whole(r, cut_after=40_000), whole])

    path = server.client().download(JOB_ID, tmp_path / "out.csv")

    assert path.read_bytes() == ARTIFACT, "the part was not joined to a whole artifact"
    assert server.requests[1].headers["Range"] == "bytes=40000-"


def test_without_a_path_the_file_takes_the_servers_name_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    server = FakeServer([whole])

    path = server.client().download(JOB_ID)

    assert path == Path("sales-7c927bcb.csv")
    assert (tmp_path / "sales-7c927bcb.csv").read_bytes() == ARTIFACT


def test_a_part_left_by_another_artifact_is_detected_by_its_sha256_and_started_over(tmp_path: Path) -> None:
    (tmp_path / "out.csv.part").write_bytes(b"x" * 1000)  # an earlier run, of something else
    server = FakeServer([ranged, whole])

    path = server.client().download(JOB_ID, tmp_path / "out.csv")

    assert path.read_bytes() == ARTIFACT
    assert "If-Range" not in server.requests[0].headers, "no ETag is known for a part from an earlier run"
    assert "Range" not in server.requests[1].headers


def test_a_part_from_an_earlier_run_is_resumed(tmp_path: Path) -> None:
    (tmp_path / "out.csv.part").write_bytes(ARTIFACT[:5000])
    server = FakeServer([ranged])

    path = server.client().download(JOB_ID, tmp_path / "out.csv")

    assert path.read_bytes() == ARTIFACT
    assert len(server.requests) == 1


def test_a_connection_that_keeps_failing_gives_up_and_keeps_the_part(tmp_path: Path) -> None:
    server = FakeServer([lambda r: whole(r, cut_after=1000), lambda r: whole(r, cut_after=0)])

    with pytest.raises(DownloadError, match="run the download again to resume"):
        server.client().download(JOB_ID, tmp_path / "out.csv")

    assert not (tmp_path / "out.csv").exists()
    assert (tmp_path / "out.csv.part").stat().st_size == 0, "each 200 restarts the part"


def test_bytes_that_do_not_match_the_etag_are_refused(tmp_path: Path) -> None:
    wrong = bytes(len(ARTIFACT))
    server = FakeServer([lambda r: httpx.Response(200, headers=HEADERS, content=wrong)])

    with pytest.raises(DownloadError, match="SHA-256"):
        server.client().download(JOB_ID, tmp_path / "out.csv")

    assert not (tmp_path / "out.csv").exists()
