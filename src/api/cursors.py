"""The job list's cursor: an opaque token for a place in the newest-first order of jobs."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

import msgspec
from litestar.exceptions import ValidationException

from application.ports import JobPosition


class _Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    created_at: datetime
    job_id: UUID


def encode_cursor(position: JobPosition) -> str:
    """URL-safe base64 of the last job's (created_at, id), without padding."""
    data = msgspec.json.encode(_Cursor(position.created_at, position.job_id))
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> JobPosition:
    """The position a cursor of `encode_cursor` names; anything else is a 400 (never a 500)."""
    try:
        data = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = msgspec.json.decode(data, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationException("cursor: not a cursor this server gave out; start again without it") from None
    if found.created_at.tzinfo is None:
        raise ValidationException("cursor: not a cursor this server gave out; start again without it")
    return JobPosition(found.created_at, found.job_id)
