"""Wake-ups between the API and the workers: "a job is waiting" and "a job has finished".

Inside one process these are asyncio events, so a job submitted to `hypereal serve` starts
at once. With Redis configured the signals also cross processes (pub/sub), so separate
`hypereal worker` processes start new jobs without a polling delay. Without Redis, other
processes fall back to short polling. Nothing is lost if a signal is: the database is the
truth and every waiter re-reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

NEW_JOBS = "hypereal:jobs:new"
FINISHED = "hypereal:jobs:finished"
NEW_DELIVERIES = "hypereal:deliveries:new"


class Signals:
    def __init__(self, redis_url: str | None = None) -> None:
        self.new_jobs = asyncio.Event()
        self.new_deliveries = asyncio.Event()
        self._finished: dict[str, list[asyncio.Event]] = {}
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        if redis_url:
            import redis.asyncio as redis

            self._redis = redis.Redis.from_url(redis_url)

    async def start(self) -> None:
        if self._redis is None:
            return
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(NEW_JOBS, FINISHED, NEW_DELIVERIES)

        async def listen() -> None:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                channel = message["channel"].decode()
                if channel == NEW_JOBS:
                    self.new_jobs.set()
                elif channel == NEW_DELIVERIES:
                    self.new_deliveries.set()
                else:
                    self._wake_waiters(message["data"].decode())

        self._listener = asyncio.create_task(listen(), name="job-signals")

    async def _publish(self, channel: str, data: str) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(channel, data)
        except Exception:
            log.warning("could not publish %s; other processes will find it by polling", channel)

    async def job_submitted(self) -> None:
        self.new_jobs.set()
        await self._publish(NEW_JOBS, "1")

    async def delivery_queued(self) -> None:
        self.new_deliveries.set()
        await self._publish(NEW_DELIVERIES, "1")

    async def job_finished(self, job_id: str) -> None:
        self._wake_waiters(job_id)
        await self._publish(FINISHED, job_id)

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

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
