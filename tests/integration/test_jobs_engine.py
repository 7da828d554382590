"""The job engine end to end on SQLite and PostgreSQL, driven by the `scripted` provider:
success, failure refunded once, rejection on the synchronous endpoint, the sweeper, polling
an upstream handle, and the synchronous wait giving way to 202."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest

from hypereal.errors import UpstreamError
from hypereal.jobs import worker as worker_module
from hypereal.store.ledger import CHARGE, REFUND
from tests.integration.jobs_support import (
    IMAGE_PRICE,
    VIDEO_PRICE,
    Stack,
    StackFactory,
    credits,
    job_row,
    net_of,
    rows_for,
    set_job,
    wait_for,
)


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


async def test_a_video_job_completes_and_is_charged_once(stack: Stack) -> None:
    account = await stack.account(credits=100)

    response = await stack.submit_video(account, seconds=0.1)

    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id = accepted["jobId"]
    assert accepted["status"] == "processing"
    assert accepted["creditsUsed"] == VIDEO_PRICE
    assert accepted["message"]
    assert urlsplit(accepted["pollUrl"]).path == f"/api/v1/jobs/{job_id}"

    done = await stack.wait_done(account, job_id)
    assert done["status"] == "completed"
    assert done["stage"] == "completed"
    assert done["model"] == "test-video" and done["type"] == "video"
    assert done["error"] is None and done["completedAt"]
    assert done["creditsUsed"] == VIDEO_PRICE
    assert done["outputs"] == [done["outputUrl"]]
    served = await stack.client.get(urlsplit(done["outputUrl"]).path)
    assert served.status_code == 200
    assert served.content == f"output of {job_id}\n".encode()

    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert rows_for(entries, job_id, REFUND) == []
    assert net_of(entries, job_id) == credits(VIDEO_PRICE)
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
    row = await job_row(stack.services, job_id)
    assert row.attempts == 1 and row.lease_owner is None


async def test_a_failed_job_is_refunded_exactly_once(stack: Stack) -> None:
    account = await stack.account(credits=100)

    job_id = (await stack.submit_video(account, outcome="fail")).json()["jobId"]
    done = await stack.wait_done(account, job_id)

    assert done["status"] == "failed"
    assert done["error"] == "Scripted failure"
    assert done["outputUrl"] is None and done["outputs"] == []
    assert done["creditsUsed"] == 0

    # Every later attempt to end it again (a late worker, the sweeper) changes nothing.
    assert stack.worker is not None
    failed = await job_row(stack.services, job_id)
    assert await stack.services.jobs.fail(failed, UpstreamError("again")) is None
    assert await stack.services.jobs.cancel_now(failed, "again") is None
    await set_job(stack.services, job_id, deadline_at=0.0)
    assert await stack.worker.sweep() == 0

    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    refunds = rows_for(entries, job_id, REFUND)
    assert len(refunds) == 1 and refunds[0].amount == credits(VIDEO_PRICE)
    assert refunds[0].note == "Scripted failure"
    assert net_of(entries, job_id) == 0
    assert await stack.balance(account) == credits(100)
    assert (await job_row(stack.services, job_id)).status == "failed"


async def test_the_synchronous_image_endpoint_answers_with_the_image(stack: Stack) -> None:
    account = await stack.account(credits=100)

    response = await stack.client.post(
        "/v1/images/generate", json={"model": "test-image", "prompt": "a cat"}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["creditsUsed"] == IMAGE_PRICE
    assert isinstance(body["created"], int)
    assert len(body["data"]) == 1 and body["data"][0]["model"] == "test-image"
    served = await stack.client.get(urlsplit(body["data"][0]["url"]).path)
    assert served.content == f"output of {body['resultId']}\n".encode()
    assert await stack.balance(account) == credits(100 - IMAGE_PRICE)


async def test_a_provider_rejection_is_a_400_with_no_net_charge(stack: Stack) -> None:
    account = await stack.account(credits=100)

    response = await stack.client.post(
        "/api/v1/images/generate",
        json={"model": "test-image", "prompt": "a cat", "outcome": "reject"},
        headers=account.headers,
    )

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "Scripted rejection of the input"
    assert body["refunded"] is True
    job_id = body["jobId"]
    assert (await stack.job(account, job_id))["status"] == "failed"
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert net_of(entries, job_id) == 0
    assert await stack.balance(account) == credits(100)


async def test_an_upstream_failure_on_the_synchronous_endpoint_is_a_502_refunded(stack: Stack) -> None:
    account = await stack.account(credits=100)

    response = await stack.client.post(
        "/api/v1/images/generate",
        json={"model": "test-image", "prompt": "a cat", "outcome": "fail"},
        headers=account.headers,
    )

    assert response.status_code == 502, response.text
    assert response.json()["refunded"] is True
    assert await stack.balance(account) == credits(100)


async def test_a_provider_that_never_answers_is_swept_failed_and_refunded(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, outcome="never")).json()["jobId"]

    async def submitting() -> bool:
        return (await job_row(stack.services, job_id)).stage == "submitting"

    await wait_for(submitting, what="the worker to hand the job to the provider")
    assert stack.worker is not None
    assert await stack.worker.sweep() == 0  # not yet past its deadline

    await set_job(stack.services, job_id, deadline_at=1.0)
    assert await stack.worker.sweep() == 1

    done = await stack.job(account, job_id)
    assert done["status"] == "failed"
    assert done["error"] == "Generation timed out"
    assert await stack.worker.sweep() == 0
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert net_of(entries, job_id) == 0
    assert await stack.balance(account) == credits(100)


async def test_a_swept_job_with_an_upstream_handle_is_canceled_upstream(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, outcome="never", polls=1)).json()["jobId"]

    async def handed_over() -> bool:
        return (await job_row(stack.services, job_id)).handle is not None

    await wait_for(handed_over, what="the upstream handle to be recorded")
    await set_job(stack.services, job_id, deadline_at=1.0)
    assert stack.worker is not None
    assert await stack.worker.sweep() == 1

    assert job_id in stack.services.jobs.providers.media("scripted").canceled
    assert (await stack.job(account, job_id))["status"] == "failed"
    assert net_of(await stack.ledger(account), job_id) == 0


async def test_a_queued_upstream_job_records_its_handle_before_polling(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, polls=2, seconds=1.5)).json()["jobId"]

    async def handle_recorded() -> Any:
        row = await job_row(stack.services, job_id)
        return row if row.handle is not None else None

    waiting = await wait_for(handle_recorded, what="the upstream handle to be recorded")
    assert not waiting.terminal
    assert waiting.handle["request_id"] == job_id
    assert waiting.stage == "running"
    assert waiting.next_poll_at is not None
    assert waiting.attempts == 1
    view = await stack.job(account, job_id)
    assert view["status"] == "processing" and view["stage"] == "running"

    done = await stack.wait_done(account, job_id)
    assert done["status"] == "completed"
    # Polled to the end without a second submission.
    finished = await job_row(stack.services, job_id)
    assert finished.attempts == 1
    assert finished.handle == waiting.handle


async def test_the_synchronous_wait_gives_way_to_202_with_the_job(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(sync_wait_seconds=0.2)
    account = await stack.account(credits=100)

    response = await stack.client.post(
        "/api/v1/images/generate", json={"model": "test-image", "prompt": "slow", "seconds": 2}, headers=account.headers
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "processing"
    assert body["creditsUsed"] == IMAGE_PRICE
    assert urlsplit(body["pollUrl"]).path == f"/api/v1/jobs/{body['jobId']}"
    done = await stack.wait_done(account, body["jobId"])
    assert done["status"] == "completed" and done["outputUrl"]
    assert await stack.balance(account) == credits(100 - IMAGE_PRICE)


async def test_a_swept_job_stuck_in_its_provider_frees_the_worker_slot(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(concurrency=1, job_lease_seconds=5)
    account = await stack.account(credits=100)
    stuck = (await stack.submit_video(account, outcome="never")).json()["jobId"]

    async def submitting() -> bool:
        return (await job_row(stack.services, stuck)).stage == "submitting"

    await wait_for(submitting, what="the only worker slot to take the stuck job")
    await set_job(stack.services, stuck, deadline_at=1.0)
    assert stack.worker is not None
    assert await stack.worker.sweep() == 1

    # The worker notices at its next heartbeat that the job ended without it and lets go.
    after = (await stack.submit_video(account)).json()["jobId"]
    done = await stack.wait_done(account, after)
    assert done["status"] == "completed"
    assert (await stack.job(account, stuck))["status"] == "failed"


async def test_a_worker_with_every_slot_taken_waits_for_a_slot_instead_of_spinning(
    make_stack: StackFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Jobs submitted while the worker is full wake it; it used to answer each wake-up by
    looping without waiting (the signal was only cleared when a slot was free), a busy loop
    taking a CPU for as long as the slots stayed taken."""
    stack = await make_stack(concurrency=1)
    account = await stack.account(credits=100)
    stuck = (await stack.submit_video(account, outcome="never")).json()["jobId"]

    async def submitting() -> bool:
        return (await job_row(stack.services, stuck)).stage == "submitting"

    await wait_for(submitting, what="the only worker slot to take the stuck job")
    waits = 0
    real_wait_for = asyncio.wait_for

    def counting_wait_for(awaitable: Any, timeout: float | None) -> Any:
        nonlocal waits
        waits += 1
        return real_wait_for(awaitable, timeout)

    monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)
    queued = [(await stack.submit_video(account)).json()["jobId"] for _ in range(3)]
    await asyncio.sleep(0.3)
    monkeypatch.undo()

    assert waits < 20, f"the claim loop went round {waits} times while no slot was free"
    assert [(await job_row(stack.services, job_id)).stage for job_id in queued] == ["queued"] * 3
    await set_job(stack.services, stuck, deadline_at=1.0)
    assert stack.worker is not None
    assert await stack.worker.sweep() == 1
    # The stuck job's slot comes back (at the heartbeat that finds it ended) and the queue moves.
    for job_id in queued:
        assert (await stack.wait_done(account, job_id))["status"] == "completed"


async def test_an_idle_worker_looks_for_work_without_taking_the_write_lock(
    make_stack: StackFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its claims and webhook rounds ask in a read first: on SQLite a write transaction, even
    an empty one, makes every chat call's ledger write wait for it."""
    monkeypatch.setattr(worker_module, "IDLE_POLL_SECONDS", 0.02)
    stack = await make_stack()
    account = await stack.account(credits=100)
    done = await stack.wait_done(account, (await stack.submit_video(account)).json()["jobId"])
    assert done["status"] == "completed"
    db = stack.services.db
    writes = 0
    real_write = db.write

    def counting_write() -> Any:
        nonlocal writes
        writes += 1
        return real_write()

    monkeypatch.setattr(db, "write", counting_write)
    await asyncio.sleep(0.5)  # some 25 idle rounds of each loop
    monkeypatch.setattr(db, "write", real_write)
    assert writes == 0

    # Work that comes is still found and claimed.
    after = (await stack.submit_video(account)).json()["jobId"]
    assert (await stack.wait_done(account, after))["status"] == "completed"
