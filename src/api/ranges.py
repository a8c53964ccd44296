"""Byte ranges of a download (RFC 9110, section 14): one range per request, as resumable downloads ask for."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` to `end` (both included) of a representation of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class RangeNotSatisfiable(Exception):
    """The range asks for bytes past the end of the representation (416, with `Content-Range: bytes */size`)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range starts past the end of the {size} bytes")
        self.size = size


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range that a `Range` header asks for, within `size` bytes; None when the whole representation is to
    be sent: no header, or one this server does not honour (another unit, several ranges, a malformed one: RFC 9110
    lets a server ignore them). Raises RangeNotSatisfiable when the range lies past the end."""
    if header is None:
        return None
    found = _ONE_RANGE.fullmatch(header.strip().replace(" ", ""))
    if found is None:
        return None
    first, last = found.groups()
    if not first:  # a suffix: the last `last` bytes
        if not last:
            return None
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - int(last)), size - 1, size)
    start = int(first)
    if last and int(last) < start:  # malformed
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(int(last), size - 1) if last else size - 1, size)


def range_applies(if_range: str | None, etag: str) -> bool:
    """Whether a `Range` is honoured given `If-Range`: only for the representation the client has part of (a strong
    ETag match). This server sends no Last-Modified, so an `If-Range` date never matches: the whole is sent."""
    return if_range is None or if_range.strip() == etag
