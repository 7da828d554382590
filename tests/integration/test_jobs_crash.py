"""Crash recovery with real `hypereal worker` processes sharing the test's database (SQLite
file or PostgreSQL): a worker killed with SIGKILL mid-job leaves a lease that expires, and the
job then completes on another worker or is refunded, never both and never charged twice. A job
whose upstream handle was recorded before the crash is polled, not submitted again. Leases are
short and renewed by a heartbeat: with the default settings a dead worker's job resumes within
seconds, and a worker busy with CPU-bound work for longer than a lease keeps its job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hypereal.settings import Settings
from hypereal.store.jobs import Job
from hypereal.store.ledger import CHARGE, REFUND
from tests.integration.jobs_support import (
    VIDEO_PRICE,
    Stack,
    StackFactory,
    WorkerPool,
    WorkerProcess,
    credits,
    job_row,
    net_of,
    rows_for,
    wait_for,
)

pytestmark = pytest.mark.slow
LEASE_SECONDS = 5.0
RECOVERY_SECONDS = 60.0  # generous: worker start-up, lease expiry and the work itself
TAKEOVER_SECONDS = 40.0
"""Enough for the default lease (15 s), a claim round and a loaded machine; less than the 60 s
lease a dead worker's jobs used to wait out."""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def make_stack(make_stack: StackFactory) -> StackFactory:
    """The shared factory, with the API alone here: only the worker processes run jobs."""

    async def make(**overrides: object) -> Stack:
        return await make_stack(worker=False, **{"job_lease_seconds": LEASE_SECONDS, **overrides})

    return make


async def wait_row(stack: Stack, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    async def matched() -> Job | None:
        row = await job_row(stack.services, job_id)
        return row if check(row) else None

    found: Job = await wait_for(matched, RECOVERY_SECONDS, interval=0.1, what=what)
    return found


async def test_a_job_whose_worker_is_killed_mid_work_completes_on_another_once(
    make_stack: Callable[..., Awaitable[Stack]], workers: WorkerPool
) -> None:
    stack = await make_stack()
    account = await stack.account(credits=100)
    first = workers.start(stack.settings)
    job_id = (await stack.submit_video(account, seconds=3)).json()["jobId"]

    working = await wait_row(stack, job_id, lambda r: r.stage == "submitting", "the first worker to start the job")
    assert working.lease_owner is not None and working.attempts == 1
    first.kill()
    workers.start(stack.settings)

    done = await stack.wait_done(account, job_id, RECOVERY_SECONDS)

    assert done["status"] == "completed", done
    served = await stack.client.get(httpx.URL(done["outputUrl"]).path)
    assert served.content == f"output of {job_id}\n".encode()
    finished = await job_row(stack.services, job_id)
    assert finished.attempts == 2  # submitted again only because the first never got a handle
    assert finished.lease_owner is None
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert rows_for(entries, job_id, REFUND) == []
    assert net_of(entries, job_id) == credits(VIDEO_PRICE)
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)


async def test_a_job_out_of_attempts_after_a_crash_is_refunded_not_completed(
    make_stack: Callable[..., Awaitable[Stack]], workers: WorkerPool
) -> None:
    stack = await make_stack(job_max_attempts=1)
    account = await stack.account(credits=100)
    first = workers.start(stack.settings)
    job_id = (await stack.submit_video(account, seconds=3)).json()["jobId"]

    await wait_row(stack, job_id, lambda r: r.stage == "submitting", "the first worker to start the job")
    first.kill()
    workers.start(stack.settings)

    done = await stack.wait_done(account, job_id, RECOVERY_SECONDS)

    assert done["status"] == "failed", done
    assert done["error"] == "Generation did not finish after 1 attempts"
    assert done["outputUrl"] is None
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert net_of(entries, job_id) == 0
    assert await stack.balance(account) == credits(100)


async def test_a_recorded_upstream_handle_is_polled_after_a_crash_not_submitted_again(
    make_stack: Callable[..., Awaitable[Stack]], workers: WorkerPool
) -> None:
    stack = await make_stack()
    account = await stack.account(credits=100)
    first = workers.start(stack.settings)
    job_id = (await stack.submit_video(account, polls=1, seconds=3)).json()["jobId"]

    handed = await wait_row(stack, job_id, lambda r: r.handle is not None, "the upstream handle to be recorded")
    assert handed.attempts == 1 and handed.handle is not None
    first.kill()
    workers.start(stack.settings)

    done = await stack.wait_done(account, job_id, RECOVERY_SECONDS)

    assert done["status"] == "completed", done
    finished = await job_row(stack.services, job_id)
    assert finished.attempts == 1
    assert finished.handle == handed.handle
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert rows_for(entries, job_id, REFUND) == []
    assert net_of(entries, job_id) == credits(VIDEO_PRICE)


async def test_with_the_default_lease_a_dead_workers_job_resumes_within_seconds(
    make_stack: Callable[..., Awaitable[Stack]], workers: WorkerPool
) -> None:
    stack = await make_stack(job_lease_seconds=Settings.model_fields["job_lease_seconds"].default)
    account = await stack.account(credits=100)
    pool = [workers.start(stack.settings), workers.start(stack.settings)]
    for worker in pool:
        await worker.running()
    job_id = (await stack.submit_video(account, seconds=3)).json()["jobId"]

    working = await wait_row(stack, job_id, lambda r: r.stage == "submitting", "a worker to start the job")
    dead = next(worker for worker in pool if worker.owns(working))
    survivor = next(worker for worker in pool if worker is not dead)
    dead.kill()

    await wait_for(lambda: _owned_by(stack, job_id, survivor), TAKEOVER_SECONDS, what="the live worker to take the job")
    done = await stack.wait_done(account, job_id, RECOVERY_SECONDS)
    assert done["status"] == "completed", done
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert rows_for(entries, job_id, REFUND) == []
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)


async def _owned_by(stack: Stack, job_id: str, worker: WorkerProcess) -> Job | None:
    row = await job_row(stack.services, job_id)
    return row if worker.owns(row) or row.terminal else None


async def test_a_worker_busy_in_cpu_bound_work_for_several_leases_keeps_its_job(
    make_stack: Callable[..., Awaitable[Stack]], workers: WorkerPool
) -> None:
    # A short lease, so that the work lasts several of them; the heartbeat comes from the event
    # loop while a thread keeps the interpreter busy.
    stack = await make_stack(job_lease_seconds=3.0, job_heartbeat_seconds=1.0)
    account = await stack.account(credits=100)
    pool = [workers.start(stack.settings, concurrency=1), workers.start(stack.settings, concurrency=1)]
    for worker in pool:
        await worker.running()
    job_id = (await stack.submit_video(account, cpu_seconds=10)).json()["jobId"]

    owners: set[str] = set()

    async def finished() -> Job | None:
        row = await job_row(stack.services, job_id)
        if row.lease_owner is not None:
            owners.add(row.lease_owner)
        return row if row.terminal else None

    done: Job = await wait_for(finished, RECOVERY_SECONDS, interval=0.1, what="the busy job to finish")

    assert done.status == "completed", done
    assert len(owners) == 1 and done.attempts == 1  # never taken by the idle worker
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert rows_for(entries, job_id, REFUND) == []
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
