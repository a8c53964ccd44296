"""Idempotency keys: a retried generate request with the same key returns the job of the first one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One key of one user: the fingerprint of the request it was first used with, and the job it created."""

    owner_id: str
    key: str
    fingerprint: str
    job_id: UUID
    created_at: datetime

    def live(self, now: datetime) -> bool:
        return now - self.created_at < KEY_LIFETIME


def fingerprint(
    report_id: UUID, parameters: Mapping[str, object], output_format: str | None, callback_url: str | None = None
) -> str:
    """A stable digest of what a generate request asks for; equal for equal requests, whatever the key order. A
    request without a callback URL digests as it did before callbacks existed (keys stored then stay valid)."""
    request: dict[str, object] = {"reportId": str(report_id), "parameters": parameters, "format": output_format}
    if callback_url is not None:
        request["callbackUrl"] = callback_url
    canonical = json.dumps(
        request,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
