"""Stress on PostgreSQL: 1,000 jobs submitted concurrently to two `hypereal worker` processes,
a fifth of them failing, one worker killed with SIGKILL mid-run. Every job ends; the ledger
charges each job once, refunds each failure once, and keeps exactly the completed jobs' price."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hypereal.services import Services
from hypereal.settings import Settings, load_settings
from hypereal.store import ledger
from hypereal.store.ledger import ADJUSTMENT, CHARGE, REFUND, SETTLE, TOPUP
from tests.conftest import ADMIN_KEY, TestAccount, create_test_account
from tests.integration.jobs_support import VIDEO_PRICE, WorkerPool, all_jobs, credits, wait_for, write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 1000
FAILING_SHARE = 0.2
ACCOUNTS = 4
WORKER_CONCURRENCY = 12
LEASE_SECONDS = 5.0
# Requests in flight at once. Each process pools at most 30 PostgreSQL connections and a
# request waits at most 30 s for one; the three processes stay well inside the server's
# default max_connections of 100.
IN_FLIGHT = 40


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def stress_settings(tmp_path: Path, new_postgres_url: Callable[[], str]) -> Settings:
    return load_settings(
        environ={},
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        database_url=new_postgres_url(),
        redis_url=os.environ.get("TEST_REDIS_URL") or None,
        catalog=write_catalog(tmp_path / "catalog"),
        job_lease_seconds=LEASE_SECONDS,
        # A share of the jobs fail at their one route on purpose, a few of them in a row by
        # chance: this test is about every job ending and every credit, not about the circuit
        # that would refuse submissions for a while (tests/integration/test_routing*.py).
        route_failures_to_open=JOBS,
        redis_prefix=f"stress-{uuid.uuid4().hex[:12]}:",  # no route state left by an earlier run
    )


async def test_a_thousand_jobs_two_workers_one_killed(
    stress_settings: Settings,
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
    workers: WorkerPool,
) -> None:
    services = await make_services(stress_settings)
    client = make_client(services)
    starting_credits = JOBS * VIDEO_PRICE
    accounts = [
        await create_test_account(services, starting_credits, rate_limit_per_hour=100 * JOBS, name=f"stress {n}")
        for n in range(ACCOUNTS)
    ]
    first = workers.start(stress_settings, WORKER_CONCURRENCY)
    workers.start(stress_settings, WORKER_CONCURRENCY)

    rng = random.Random(20240611)
    plans = [
        {
            "prompt": f"job {n}",
            "outcome": "fail" if rng.random() < FAILING_SHARE else "complete",
            "seconds": round(rng.uniform(0.0, 0.4), 3),
            "polls": 1 if rng.random() < 0.2 else 0,
        }
        for n in range(JOBS)
    ]

    gate = asyncio.Semaphore(IN_FLIGHT)

    async def submit(n: int) -> tuple[TestAccount, str, str]:
        account = accounts[n % ACCOUNTS]
        async with gate:
            response = await client.post(
                "/api/v1/videos/generate", json={"model": "test-video", "input": plans[n]}, headers=account.headers
            )
        assert response.status_code == 202, response.text
        return account, response.json()["jobId"], plans[n]["outcome"]

    async def held_by_first() -> list[str]:
        return [job.id for job in await all_jobs(services) if f":{first.process.pid}:" in (job.lease_owner or "")]

    async def kill_mid_run() -> list[str]:
        """SIGKILL the first worker once a third of the jobs are done, while it holds some."""

        async def time_to_kill() -> list[str]:
            finished = sum(job.terminal for job in await all_jobs(services))
            return await held_by_first() if finished >= JOBS // 3 else []

        held: list[str] = await wait_for(time_to_kill, 120, interval=0.2, what="the first worker to be mid-run")
        first.kill()
        return held

    started = time.monotonic()
    killer = asyncio.create_task(kill_mid_run())
    submitted = await asyncio.gather(*(submit(n) for n in range(JOBS)))
    print(f"submitted {JOBS} jobs in {time.monotonic() - started:.1f} s")
    outcome_of = {job_id: outcome for _, job_id, outcome in submitted}
    interrupted = await killer

    async def all_done() -> bool:
        return sum(job.terminal for job in await all_jobs(services)) == JOBS

    await wait_for(all_done, 120, interval=0.5, what="every job to reach a terminal state")
    print(f"all {JOBS} jobs ended {time.monotonic() - started:.1f} s after the first submission")

    jobs = {job.id: job for job in await all_jobs(services)}
    assert set(jobs) == set(outcome_of)
    statuses = Counter(job.status for job in jobs.values())
    expected_failures = sum(outcome == "fail" for outcome in outcome_of.values())
    assert statuses == {"completed": JOBS - expected_failures, "failed": expected_failures}
    for job_id, job in jobs.items():
        assert job.status == ("failed" if outcome_of[job_id] == "fail" else "completed"), job
        assert job.lease_owner is None
    # The jobs the killed worker held were finished by the other one (or ended by it at once).
    assert interrupted
    assert all(jobs[job_id].terminal for job_id in interrupted)

    completed_per_account: Counter[str] = Counter()
    for account, job_id, _ in submitted:
        if jobs[job_id].status == "completed":
            completed_per_account[account.id] += 1

    for account in accounts:
        async with services.db.read() as conn:
            entries = await ledger.page(conn, account.id, 100 * JOBS, None)
            balance = await ledger.balance(conn, account.id)
        by_job: dict[str, Counter[str]] = {}
        amount_by_job: dict[str, int] = Counter()
        for entry in entries:
            if entry.kind in (TOPUP, ADJUSTMENT):
                continue
            by_job.setdefault(entry.reference, Counter())[entry.kind] += 1
            amount_by_job[entry.reference] += entry.amount
        own_jobs = [job_id for owner, job_id, _ in submitted if owner.id == account.id]
        assert set(by_job) == set(own_jobs)
        for job_id in own_jobs:
            kinds = by_job[job_id]
            assert kinds[CHARGE] == 1, (job_id, kinds)
            if jobs[job_id].status == "failed":
                assert kinds[REFUND] == 1 and kinds[SETTLE] == 0, (job_id, kinds)
                assert amount_by_job[job_id] == 0
            else:
                assert kinds[REFUND] == 0 and kinds[SETTLE] == 1, (job_id, kinds)
                assert amount_by_job[job_id] == -credits(VIDEO_PRICE)
        charged_net = -sum(amount_by_job.values())
        assert charged_net == completed_per_account[account.id] * credits(VIDEO_PRICE)
        assert balance == credits(starting_credits) - charged_net
        assert balance == sum(entry.amount for entry in entries)
