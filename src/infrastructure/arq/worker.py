"""The arq worker that `reportgen worker` runs: arq's own, except how it picks jobs from a busy queue."""

from __future__ import annotations

from arq.constants import in_progress_key_prefix
from arq.worker import Worker


class ReportWorker(Worker):
    """arq's Worker, skipping in one round trip the queued ids that other workers are running.

    Each poll reads up to `queue_read_limit` ids from the head of the queue and tries them in order; arq spends
    three round trips on each id to learn that another worker runs it (a WATCH, EXISTS and ZSCORE on a
    connection of its own). With several workers on one queue the head is other workers' running jobs, so a
    poll spent most of its time on them and few jobs started. One pipelined EXISTS per poll drops those ids first;
    arq's own check still guards every start (an id taken between the two is skipped by it as before).
    """

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if len(job_ids) > 1:
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(in_progress_key_prefix + job_id.decode())
                running = await pipe.execute()
            job_ids = [job_id for job_id, taken in zip(job_ids, running, strict=True) if not taken]
        await super().start_jobs(job_ids)
