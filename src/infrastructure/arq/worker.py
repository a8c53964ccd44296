"""The arq worker that `reportgen worker` runs: arq's own, except how it picks jobs when there are several workers.

Two things differ, both about sharing one queue with other workers:

- Each poll reads up to `queue_read_limit` ids from the head of the queue and tries them in order; arq spends three
  round trips on each id to learn that another worker runs it (a WATCH, EXISTS and ZSCORE on a connection of its
  own). With several workers on one queue the head is other workers' running jobs, so a poll spent most of its
  time on them and few jobs started. One pipelined EXISTS per poll drops those ids first; arq's own check still
  guards every start (an id taken between the two is skipped by it as before).
- A worker running a long job (a large report, running for more than LONG_JOB_SECONDS) shares its process, and
  its event loop, with every job it starts beside it: small jobs started there wait behind the large one's work.
  So while it runs one, and another worker is free of long jobs, it stops picking jobs and leaves them to that
  worker. The workers of a queue say in a Redis hash, every BALANCE_SECONDS, whether they run a long job; one
  that says nothing for PEER_FRESH_SECONDS is not counted. When every worker runs a long job, all keep picking:
  a job never waits for a free worker that does not exist.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from signal import Signals

from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

LONG_JOB_SECONDS = 2.0
"""A job running longer than this makes its worker leave new jobs to workers without one."""
BALANCE_SECONDS = 0.5
"""How often a worker tells the others whether it runs a long job, and reads what they told."""
PEER_FRESH_SECONDS = 3.0
"""A worker that said nothing for this long (stopped, killed, stuck) is not counted as free."""
FORGET_SECONDS = 60.0
"""Entries older than this are removed from the hash (workers that are gone)."""


class ReportWorker(Worker):
    """arq's Worker that skips other workers' running jobs in one round trip and leaves new jobs to free workers
    while it runs a long one (see the module's documentation)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._workers_key = f"{self.queue_name}:workers"
        self._started: dict[str, float] = {}
        self._next_balance = 0.0
        self._stopping = False
        self.leaving_jobs_to_others = False
        """Whether this worker stopped picking jobs because it runs a long one and another worker is free."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if len(job_ids) > 1:
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(in_progress_key_prefix + job_id.decode())
                running = await pipe.execute()
            job_ids = [job_id for job_id, taken in zip(job_ids, running, strict=True) if not taken]
        await super().start_jobs(job_ids)
        now = time.monotonic()
        for running_id in self.tasks:
            self._started.setdefault(running_id, now)

    async def heart_beat(self) -> None:
        await super().heart_beat()
        now = time.monotonic()
        if now >= self._next_balance:
            self._next_balance = now + BALANCE_SECONDS
            await self.balance(now)

    async def balance(self, now: float) -> None:
        """Say whether this worker runs a long job; stop picking jobs while it does and another worker is free."""
        self._started = {job_id: at for job_id, at in self._started.items() if job_id in self.tasks}
        running_long = any(now - at > LONG_JOB_SECONDS for at in self._started.values())
        wall = time.time()
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.hset(self._workers_key, self.worker_id, f"{wall:.3f} {int(running_long)}")
            pipe.expire(self._workers_key, int(FORGET_SECONDS))
            pipe.hgetall(self._workers_key)
            *_, workers = await pipe.execute()
        free_peer, gone = False, []
        for worker_id, value in workers.items():
            said_at, long_flag = value.decode().split()
            age = wall - float(said_at)
            if age > FORGET_SECONDS:
                gone.append(worker_id)
            elif worker_id.decode() != self.worker_id and age <= PEER_FRESH_SECONDS and long_flag == "0":
                free_peer = True
        if gone:
            await self.pool.hdel(self._workers_key, *gone)  # type: ignore[misc]  # redis-py's sync|async union
        self.leaving_jobs_to_others = running_long and free_peer
        if not self._stopping:
            self.allow_pick_jobs = not self.leaving_jobs_to_others

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        self._stopping = True  # arq stops picking jobs now: balancing must not turn it back on
        super().handle_sig_wait_for_completion(signum)

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(RedisError, OSError):  # Redis gone: the entry ages out
                await self.pool.hdel(self._workers_key, self.worker_id)  # type: ignore[misc]  # as above
        await super().close()
