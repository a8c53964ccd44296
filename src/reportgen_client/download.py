"""A result to a file, resumed after a dropped connection: what arrived is kept in `<file>.part`, the next request
asks for the rest (`Range: bytes=<size>-`, `If-Range: <ETag>`), and the file is complete only when its size and
SHA-256 are the artifact's (its ETag is the quoted SHA-256). A 200 where a 206 was asked for means the server
sends the whole artifact again (another artifact, or no ranges): the part is started over."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import httpx

from reportgen_client.errors import ConnectionFailed, DownloadError, api_error
from reportgen_client.headers import retry_after

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as the download advances."""

MAX_FAILURES = 5
"""Connection failures in a row (without a byte of progress between them) before giving up."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_SHA256_ETAG = re.compile(r'"([0-9a-f]{64})"')


@dataclass
class _State:
    part: Path
    etag: str | None = None
    total: int | None = None
    filename: str | None = None
    checked_whole: bool = False
    """True once a ranged request was made with If-Range, or the whole artifact was sent: the part is known to be
    of this artifact. A part left by an earlier run is verified by its SHA-256 at the end instead."""


def download_result(
    http: httpx.Client,
    url: str,
    job_id: str,
    path: str | Path | None,
    *,
    on_progress: ProgressCallback | None = None,
    sleep: Callable[[float], None],
) -> Path:
    target = None if path is None else Path(path)
    state = _State(part=Path(f"{target}.part") if target is not None else Path(f"reportgen-{job_id}.part"))
    failures = 0
    while True:
        before = _size(state.part)
        try:
            if not _fetch(http, url, state, on_progress):
                continue
        except (httpx.TransportError, _Unavailable) as exc:
            failures = 1 if _size(state.part) > before else failures + 1
            if failures >= MAX_FAILURES:
                raise DownloadError(
                    f"the connection kept failing ({str(exc) or type(exc).__name__}); "
                    f"{_size(state.part)} bytes are kept in {state.part}: run the download again to resume"
                ) from exc
            sleep(exc.seconds if isinstance(exc, _Unavailable) else min(0.25 * 2**failures, 5.0))
            continue
        if _complete(state):
            break
        if state.checked_whole:
            state.part.unlink(missing_ok=True)
            raise DownloadError(f"the file that arrived is not the result (size or SHA-256 differ from {state.etag})")
        state.part.unlink()  # a part left by another download joined to this one: start over, once
        state.checked_whole = True
    final = target if target is not None else Path(_safe_name(state.filename, job_id))
    os.replace(state.part, final)
    return final


class _Unavailable(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the server is unavailable, retry in {seconds:g} s")
        self.seconds = seconds


def _fetch(http: httpx.Client, url: str, state: _State, on_progress: ProgressCallback | None) -> bool:
    """One request for what is missing; False when the part had to be dropped before anything was received."""
    offset = _size(state.part)
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.etag is not None:
            headers["If-Range"] = state.etag
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:  # the part is as long as the artifact, or longer: start over
            state.part.unlink()
            return False
        if response.status_code in (429, 503):
            raise _Unavailable(retry_after(response) or 1.0)
        if response.is_error:
            response.read()
            raise api_error(response)
        offset = _accept(response, state, offset)
        _receive(response, state, offset, on_progress)
    return True


def _accept(response: httpx.Response, state: _State, offset: int) -> int:
    """Where this response's bytes go in the file; learn the artifact's size, ETag and name."""
    state.etag = response.headers.get("etag", state.etag)
    disposition = response.headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        state.filename = message.get_filename() or state.filename
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
        if match is None or int(match.group(1)) != offset:
            raise ConnectionFailed(f"the server sent another range than asked for: {match and match.group(0)}")
        state.total = int(match.group(3))
        state.checked_whole = state.checked_whole or "If-Range" in response.request.headers
        return offset
    length = response.headers.get("content-length")
    state.total = int(length) if length is not None else None
    state.checked_whole = True
    return 0  # the whole artifact: what the part held is dropped


def _receive(response: httpx.Response, state: _State, offset: int, on_progress: ProgressCallback | None) -> None:
    done = offset
    with state.part.open("r+b" if offset else "wb") as file:
        file.seek(offset)
        file.truncate()
        if on_progress is not None:
            on_progress(done, state.total)
        for chunk in response.iter_bytes():
            file.write(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, state.total)


def _complete(state: _State) -> bool:
    if state.total is None or _size(state.part) != state.total:
        return False
    match = _SHA256_ETAG.fullmatch(state.etag or "")
    if match is None:
        return True  # no SHA-256 to compare with: the size must do
    digest = hashlib.sha256()
    with state.part.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == match.group(1)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _safe_name(name: str | None, job_id: str) -> str:
    """The server's file name, as a plain name in the current directory (never a path elsewhere)."""
    base = Path(name or "").name
    return base if base not in ("", ".", "..") else f"reportgen-{job_id}"
