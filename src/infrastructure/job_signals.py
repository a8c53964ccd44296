"""The signals that wake requests waiting for a job (`GET /jobs/{id}?wait=`).

`LocalJobSignals` keeps this process's waiters and wakes them; in embedded mode it hears the committed transitions
directly (the worker is in the process). With Redis, `RedisJobSignals` carries the ids of jobs that finished from the
process that committed them (a worker, an API cancel) to every API process, over one pub/sub channel; each API
process listens on one connection of its own and wakes its local waiters. A waiter holds no database connection
while it sleeps, and a signal only says "read it again", so a lost or repeated message costs at most one read or
the rest of a `wait`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from application.ports import JobSignals, JobTransition, JobWatch

log = logging.getLogger(__name__)

RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Back-off of the listener after it lost Redis: the first try is quick, then at most every 5 s."""


def job_events_channel(queue_name: str) -> str:
    """The Redis channel of one deployment's finished jobs (channels are server-wide, not per database)."""
    return f"reportgen:finished-jobs:{queue_name}"


def finished_job_ids(transitions: Sequence[JobTransition]) -> list[UUID]:
    """The jobs that reached a terminal status among `transitions`: the only ones a waiter is woken for."""
    return [t.change.job_id for t in transitions if t.change.new.is_terminal]


class _Watch(JobWatch):
    def __init__(self, signals: LocalJobSignals) -> None:
        self._signals = signals
        self.event = asyncio.Event()

    async def changed(self) -> bool:
        if self._signals.closing:
            return False
        await self.event.wait()
        self.event.clear()
        return not self._signals.closing


class LocalJobSignals(JobSignals):
    """This process's waiters, by job id."""

    def __init__(self) -> None:
        self._watches: dict[UUID, set[_Watch]] = {}
        self.closing = False

    @asynccontextmanager
    async def watch(self, job_id: UUID) -> AsyncIterator[JobWatch]:
        watch = _Watch(self)
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]

    @property
    def waiting(self) -> int:
        return sum(len(watches) for watches in self._watches.values())

    def notify(self, job_ids: Sequence[UUID]) -> None:
        for job_id in job_ids:
            for watch in self._watches.get(job_id, ()):
                watch.event.set()

    def wake_all(self) -> None:
        """Every waiter reads its job again (the signals may have been lost for a while)."""
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()

    def close(self) -> None:
        """The server is stopping: every waiter answers now, and new ones do not wait."""
        self.closing = True
        self.wake_all()

    async def on_transitions(self, transitions: Sequence[JobTransition]) -> None:
        """A subscriber of the committed transitions (embedded mode: the worker is in this process)."""
        self.notify(finished_job_ids(transitions))


class RedisJobSignals:
    """Finished jobs announced on a Redis channel (`publish`, a subscriber of committed transitions, in any process)
    and heard by `listen` (a task of each API process), which wakes the local waiters."""

    def __init__(self, redis: Redis, channel: str, local: LocalJobSignals | None = None) -> None:
        self._redis = redis
        self.channel = channel
        self._local = local

    async def publish(self, transitions: Sequence[JobTransition]) -> None:
        job_ids = finished_job_ids(transitions)
        if not job_ids:
            return
        try:
            await self._redis.publish(self.channel, " ".join(str(job_id) for job_id in job_ids))
        except (RedisError, OSError) as exc:  # waiters then answer at their deadline, no later
            log.warning("could not announce finished jobs", extra={"jobs": len(job_ids), "error": repr(exc)})

    async def listen(self, url: str) -> None:
        """Until cancelled: subscribe and pass on each message; after losing Redis, back off, subscribe again and
        wake every local waiter (a message may have been missed meanwhile)."""
        if self._local is None:
            raise RuntimeError("listen() needs the local signals to wake")
        failures = 0
        while True:
            client: Redis = Redis.from_url(url, socket_connect_timeout=1.0, health_check_interval=5)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    if failures:
                        log.info("listening for finished jobs again", extra={"channel": self.channel})
                        self._local.wake_all()
                    failures = 0
                    while True:
                        message = await pubsub.get_message(timeout=5.0)
                        if message is not None:
                            self._local.notify(_job_ids(message.get("data")))
            except Exception as exc:  # RedisError, OSError, or a bug: the waiters still answer by their deadline
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                if failures == 0:
                    log.warning("lost the channel of finished jobs", extra={"error": repr(exc)})
                failures += 1
                await asyncio.sleep(delay)
            finally:
                await client.aclose()


def _job_ids(data: object) -> list[UUID]:
    if not isinstance(data, bytes | str):
        return []
    text = data.decode() if isinstance(data, bytes) else data
    ids = []
    for part in text.split():
        try:
            ids.append(UUID(part))
        except ValueError:
            continue
    return ids
