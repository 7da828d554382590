"""Wake-ups between the API and the workers: "a job is waiting", "a job has finished",
"a webhook is due".

They travel on the process bus (hypereal.bus): in-process events for the embedded default,
Redis pub/sub or PostgreSQL NOTIFY between processes, so a job submitted to any API process
starts at once on an idle worker anywhere. Nothing is lost if a signal is: the database is
the truth, workers also look on a short timer, and every waiter re-reads the job.
"""

from __future__ import annotations

import asyncio
import contextlib

from hypereal.bus import Bus

NEW_JOBS = "jobs.new"
FINISHED = "jobs.finished"
NEW_DELIVERIES = "deliveries.new"


class Signals:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.new_jobs = asyncio.Event()
        self.new_deliveries = asyncio.Event()
        self._finished: dict[str, list[asyncio.Event]] = {}
        bus.subscribe(NEW_JOBS, lambda _data: self.new_jobs.set())
        bus.subscribe(NEW_DELIVERIES, lambda _data: self.new_deliveries.set())
        bus.subscribe(FINISHED, self._wake_waiters)

    async def job_submitted(self) -> None:
        await self.bus.publish(NEW_JOBS)

    async def delivery_queued(self) -> None:
        await self.bus.publish(NEW_DELIVERIES)

    async def job_finished(self, job_id: str) -> None:
        await self.bus.publish(FINISHED, job_id)

    def _wake_waiters(self, job_id: str) -> None:
        for event in self._finished.get(job_id, ()):
            event.set()

    async def wait_finished(self, job_id: str, seconds: float) -> None:
        """Return when `job_id` may have finished, or after `seconds`; the caller re-reads."""
        event = asyncio.Event()
        self._finished.setdefault(job_id, []).append(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        finally:
            waiters = self._finished.get(job_id, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._finished.pop(job_id, None)
