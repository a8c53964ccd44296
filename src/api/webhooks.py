"""The webhook payload of an ended job: the event's type and time, and the job status body that
`GET /api/v1/jobs/{jobId}` answers its owner (one definition: `job_status_out`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from api.controllers.jobs import job_status_out, links
from api.schemas import JobStatusOut, WireStruct, utc
from domain.jobs import JobExecutionLog


class JobEventOut(WireStruct):
    type: str
    """`job.succeeded`, `job.failed` or `job.cancelled`."""
    timestamp: datetime
    """When the job ended."""
    data: JobStatusOut


_ENCODER = msgspec.json.Encoder()


def job_event_body(job: JobExecutionLog) -> bytes:
    """The payload as sent and signed. The job is shown as its owner sees it (an error's admin-only `detail` is
    left out), with the links its requester was given."""
    status_url = job.callback.status_url if job.callback is not None else ""
    event = JobEventOut(
        type=f"job.{job.status.value.lower()}",
        timestamp=utc(job.finished_at or job.created_at),
        data=job_status_out(job, show_detail=False, **links(status_url)),
    )
    return _ENCODER.encode(event)
