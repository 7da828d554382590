"""Workers: claim jobs with a lease, hand them to providers, poll upstreams, finish them.

A worker holds a job only while it works on it: while an upstream queue is busy the lease
is released and `next_poll_at` says when to look again, so any worker (after a crash,
another one) resumes polling the recorded upstream handle instead of submitting again.

Leases are short (HYPEREAL_JOB_LEASE_SECONDS) so that a dead worker's jobs go back to the
queue within seconds, and one heartbeat per worker renews all the leases it holds in one
statement every HYPEREAL_JOB_HEARTBEAT_SECONDS. The heartbeat runs on the event loop, never
in the work itself (CPU-bound models run in threads), so a worker busy for minutes keeps its
jobs; it runs only while the worker holds a job, so an idle worker adds no wake-up. A lease
found lost (the job ended elsewhere, or another worker took it) stops the provider call.
An expired lease returns the job to the queue, up to HYPEREAL_JOB_MAX_ATTEMPTS submissions.
A sweeper fails and refunds jobs past their deadline, and a dispatcher delivers the webhook
outbox.
An upstream that refuses the submission, or fails the job before producing anything, in a
way another route may not (`hypereal.providers.failures.FAILS_OVER`), hands the job to the
next route of its plan that it has not been to (`JobEngine.next_target`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.errors import HyperealError, UpstreamError
from hypereal.jobs.engine import JobEngine
from hypereal.providers.base import Handle, MediaRequest, Pending, Result
from hypereal.providers.failures import FAILS_OVER
from hypereal.store import accounts as account_store
from hypereal.store import jobs as store
from hypereal.store.jobs import Job
from hypereal.webhooks import deliver, next_delay

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
SWEEP_SECONDS = 5.0
T = TypeVar("T")


class _Abandoned(Exception):
    """The job stopped being ours (ended elsewhere, or its lease taken) while a provider ran."""


class Worker:
    def __init__(self, engine: JobEngine, concurrency: int) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.concurrency = concurrency
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._running: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self._abandoned: set[str] = set()
        self._held: dict[str, asyncio.Task[None]] = {}
        """The jobs whose leases this worker holds, and the task working on each."""
        self._heartbeat: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="job-claims"),
            asyncio.create_task(self._sweep_loop(), name="job-sweeper"),
            asyncio.create_task(self._delivery_loop(), name="webhook-deliveries"),
        ]

    async def stop(self) -> None:
        tasks = [*self._loops, *self._running, *([self._heartbeat] if self._heartbeat else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        signal = self.engine.signals.new_jobs
        while True:
            free = self.concurrency - len(self._running)
            if free <= 0:
                # Every slot is taken: only a job ending (`_done`) makes room. New jobs are
                # not looked for meanwhile, and their wake-ups are not answered one by one.
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            signal.clear()
            claimed: list[Job] = []
            try:
                if await self._read(store.any_runnable):
                    async with self.engine.db.write() as conn:
                        claimed = await store.claim(conn, self.owner, self.settings.job_lease_seconds, free)
            except Exception:
                log.exception("claiming jobs failed")
            for job in claimed:
                task = asyncio.create_task(self._work(job), name=f"job-{job.id}")
                self._held[job.id] = task
                self._running.add(task)
                task.add_done_callback(self._done)
            if claimed and (self._heartbeat is None or self._heartbeat.done()):
                self._heartbeat = asyncio.create_task(self._renew_leases(), name="job-heartbeat")
            if claimed and len(claimed) == free:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), IDLE_POLL_SECONDS)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        # A slot is free: look for more work now rather than at the next idle tick.
        self._slot_freed.set()
        self.engine.signals.new_jobs.set()

    async def _work(self, job: Job) -> None:
        try:
            await self._advance(job)
        except asyncio.CancelledError:
            raise
        except _Abandoned:
            log.warning("job %s ended or was taken over while its provider ran; abandoned here", job.id)
        except HyperealError as error:
            await self.engine.fail(job, error)
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            await self.engine.fail(job, HyperealError("Generation failed because of an internal error"))
        finally:
            # Unless the job, released by this task, was claimed again and is another task's now.
            if self._held.get(job.id) is asyncio.current_task():
                del self._held[job.id]

    async def _renew_leases(self) -> None:
        """Every heartbeat interval, renew the lease of every job held; ends when none is."""
        while self._held:
            await asyncio.sleep(self.settings.job_heartbeat_interval)
            held = set(self._held)
            if not held:
                return
            try:
                async with self.engine.db.write() as conn:
                    kept = await store.extend_leases(
                        conn, held, self.owner, time.time() + self.settings.job_lease_seconds
                    )
            except Exception:
                # The leases outlast a missed beat or two; the next one tries again.
                log.exception("renewing job leases failed")
                continue
            for job_id in held - kept:
                self._lost(job_id)

    def _lost(self, job_id: str) -> None:
        """The job is no longer ours. A provider that never returns would otherwise hold its
        slot forever after the sweeper (or a cancel, or another worker) has dealt with the job."""
        call = self._calls.get(job_id)
        if call is not None and job_id in self._held:
            self._abandoned.add(job_id)
            call.cancel()

    async def _provider_call(self, job_id: str, call: Awaitable[T]) -> T:
        """Await a provider; abandoned (`_Abandoned`) when the heartbeat finds the job is not ours."""
        task = asyncio.ensure_future(call)
        self._calls[job_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job_id in self._abandoned and not (current and current.cancelling()):
                raise _Abandoned from None
            raise
        finally:
            self._calls.pop(job_id, None)
            self._abandoned.discard(job_id)

    async def _advance(self, job: Job) -> None:
        provider = self.engine.provider_of(job)
        if job.handle is None:
            if job.attempts >= self.settings.job_max_attempts:
                await self.engine.fail(job, UpstreamError(f"Generation did not finish after {job.attempts} attempts"))
                return
            async with self.engine.db.write() as conn:
                await store.update_owned(conn, job.id, self.owner, attempts=job.attempts + 1, stage="submitting")
            request = MediaRequest(
                job_id=job.id,
                model=job.model,
                upstream_model=job.upstream_model or job.model,
                category=job.category,
                params=job.params,
                mode=job.mode,
            )
            started = time.monotonic()
            try:
                outcome: Handle | Result | Pending = await self._provider_call(
                    job.id, provider.submit(request, self.engine.inputs)
                )
            except FAILS_OVER as error:
                self.engine.attempted(job, error)
                if await self._fall_back(job, error):
                    return
                raise
            self.engine.attempted(job, None, time.monotonic() - started)
            if isinstance(outcome, Handle):
                # Recorded before anything else, so recovery polls this id instead of submitting again.
                async with self.engine.db.write() as conn:
                    await store.update_owned(
                        conn,
                        job.id,
                        self.owner,
                        handle=asdict(outcome),
                        stage="running",
                        next_poll_at=time.time() + 1.0,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                return
        else:
            try:
                outcome = await self._provider_call(job.id, provider.poll(Handle(**job.handle)))
            except FAILS_OVER as error:
                self.engine.attempted(job, error)
                if await self._fall_back(job, error):
                    return
                raise
        if isinstance(outcome, Pending):
            async with self.engine.db.write() as conn:
                await store.update_owned(
                    conn,
                    job.id,
                    self.owner,
                    stage=outcome.stage,
                    next_poll_at=time.time() + outcome.retry_after,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            return
        if not isinstance(outcome, Result):
            raise UpstreamError(f"Provider {job.provider} answered a poll with {type(outcome).__name__}")
        current = await self._reread(job)
        await self.engine.complete(current, outcome)

    async def _fall_back(self, job: Job, error: HyperealError) -> bool:
        """Hand the job to the next route of its plan it has not been to, after `error`."""
        target = self.engine.next_target(job)
        if target is None:
            return False
        log.warning("job %s: %s failed (%s); trying %s", job.id, job.provider, error.message, target.key)
        async with self.engine.db.write() as conn:
            moved = await store.update_owned(conn, job.id, self.owner, **self.engine.handed_over(job, target, error))
        if moved:
            await self.engine.signals.job_submitted()
        return moved

    async def _read(self, question: Callable[[AsyncConnection], Awaitable[bool]]) -> bool:
        """Whether there is work, asked without the write lock: an idle worker checks every
        second, and on SQLite each write transaction makes every other write wait for it."""
        async with self.engine.db.read() as conn:
            return await question(conn)

    async def _reread(self, job: Job) -> Job:
        async with self.engine.db.read() as conn:
            return await store.get(conn, job.id)

    # ---- sweeping -----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping jobs failed")
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self) -> int:
        """Fail and refund every job past its deadline; returns how many were swept."""
        async with self.engine.db.read() as conn:
            overdue = await store.past_deadline(conn, 100)
        for job in overdue:
            if job.handle is not None:
                with contextlib.suppress(Exception):
                    await self.engine.provider_of(job).cancel(Handle(**job.handle))
            await self.engine.fail(job, UpstreamError("Generation timed out"))
        return len(overdue)

    # ---- webhooks -----------------------------------------------------------------------

    async def _delivery_loop(self) -> None:
        signal = self.engine.signals.new_deliveries
        while True:
            signal.clear()
            try:
                due: list[store.Delivery] = []
                if await self._read(store.any_delivery_due):
                    async with self.engine.db.write() as conn:
                        due = await store.claim_deliveries(conn, self.settings.webhook_timeout_seconds * 2, 20)
                if due:
                    await asyncio.gather(*(self._deliver(d) for d in due))
                    continue
            except Exception:
                log.exception("webhook delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), IDLE_POLL_SECONDS)

    async def _deliver(self, delivery: store.Delivery) -> None:
        async with self.engine.db.read() as conn:
            account = await account_store.get_account(conn, delivery.account_id)
        secrets_in_use = [account.webhook_secret]
        if account.previous_webhook_secret:
            secrets_in_use.append(account.previous_webhook_secret)
        attempt = await deliver(
            self.engine.guard,
            delivery.url,
            delivery.payload.encode(),
            delivery.message_id,
            secrets_in_use,
            self.settings.webhook_timeout_seconds,
        )
        self.engine.metrics.webhook_attempts.labels(attempt.outcome).inc()
        next_at: float | None = None
        if attempt.outcome == "retry":
            delay = next_delay(delivery.attempts + 1, self.settings.webhook_schedule, attempt.retry_after, self._rng)
            next_at = None if delay is None else time.time() + delay
        async with self.engine.db.write() as conn:
            await store.record_attempt(
                conn,
                delivery,
                status_code=attempt.status,
                outcome=attempt.outcome,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
                next_attempt_at=next_at,
            )


async def start_in_process(services: Any) -> None:
    """Run workers inside the API process (the default for `hypereal serve`)."""
    worker = Worker(services.jobs, services.settings.worker_concurrency)
    worker.start()
    services.extensions["worker"] = _Stoppable(worker)


class _Stoppable:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def close(self) -> None:
        await self.worker.stop()


async def run_standalone(settings: Any) -> None:
    """`hypereal worker`: workers only, until interrupted."""
    from hypereal.services import Services

    services = Services.build(settings)
    await services.start()
    worker = Worker(services.jobs, settings.worker_concurrency)
    worker.start()
    log.info("worker %s running with concurrency %d", worker.owner, settings.worker_concurrency)
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop()
        await services.close()
