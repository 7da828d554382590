"""`Idempotency-Key` on the charging media endpoints, on SQLite and PostgreSQL: the same key and
body give the same answer and one charge, also when the requests race; another body is a 409."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.store.ledger import CHARGE
from tests.conftest import TestAccount
from tests.integration.jobs_support import IMAGE_PRICE, VIDEO_PRICE, Stack, all_jobs, credits, start_stack

VIDEO_BODY = {"model": "test-video", "input": {"prompt": "a key"}}


@pytest.fixture
async def stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> Stack:
    return await start_stack(tmp_path, make_settings, make_services, make_client)


async def post_video(stack: Stack, account: TestAccount, key: str, body: dict[str, Any] = VIDEO_BODY) -> httpx.Response:
    headers = {**account.headers, "Idempotency-Key": key}
    return await stack.client.post("/api/v1/videos/generate", json=body, headers=headers)


async def charges(stack: Stack, account: TestAccount) -> int:
    return len([entry for entry in await stack.ledger(account) if entry.kind == CHARGE])


async def test_the_same_key_and_body_give_the_same_answer_and_one_charge(stack: Stack) -> None:
    account = await stack.account(credits=100)

    first = await post_video(stack, account, "key-1")
    second = await post_video(stack, account, "key-1")

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await all_jobs(stack.services)) == 1
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)

    # The same key on the other prefix is the same request path only when the path matches.
    other_key = await post_video(stack, account, "key-2")
    assert other_key.status_code == 202 and other_key.json()["jobId"] != first.json()["jobId"]
    assert await charges(stack, account) == 2


async def test_the_same_key_with_another_body_is_a_409_without_a_charge(stack: Stack) -> None:
    account = await stack.account(credits=100)
    assert (await post_video(stack, account, "key-1")).status_code == 202

    changed = await post_video(stack, account, "key-1", {"model": "test-video", "input": {"prompt": "another"}})

    assert changed.status_code == 409
    assert changed.json()["error"] == "This Idempotency-Key was already used with a different request"
    assert await charges(stack, account) == 1
    assert len(await all_jobs(stack.services)) == 1


async def test_racing_requests_with_one_key_charge_once(stack: Stack) -> None:
    account = await stack.account(credits=100)

    responses = await asyncio.gather(*(post_video(stack, account, "race") for _ in range(8)))

    accepted = [r for r in responses if r.status_code == 202]
    assert accepted, [r.text for r in responses]
    assert len({r.json()["jobId"] for r in accepted}) == 1
    for response in responses:
        if response.status_code != 202:
            # A request that arrives while the first is still being answered is told so.
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "A request with this Idempotency-Key is still in progress"
    assert len(await all_jobs(stack.services)) == 1
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
    replay = await post_video(stack, account, "race")
    assert replay.status_code == 202 and replay.content == accepted[0].content


async def test_keys_belong_to_one_account(stack: Stack) -> None:
    first = await stack.account(credits=100, name="A")
    second = await stack.account(credits=100, name="B")

    mine = await post_video(stack, first, "shared-key")
    theirs = await post_video(stack, second, "shared-key")

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["jobId"] != theirs.json()["jobId"]
    assert await stack.balance(first) == await stack.balance(second) == credits(100 - VIDEO_PRICE)


async def test_the_synchronous_endpoint_replays_its_finished_answer(stack: Stack) -> None:
    account = await stack.account(credits=100)
    headers = {**account.headers, "Idempotency-Key": "image-1"}
    body = {"model": "test-image", "prompt": "a key"}

    first = await stack.client.post("/api/v1/images/generate", json=body, headers=headers)
    second = await stack.client.post("/v1/images/generate", json=body, headers=headers)
    third = await stack.client.post("/api/v1/images/generate", json=body, headers=headers)

    assert first.status_code == 200, first.text
    assert third.status_code == 200 and third.content == first.content
    # /v1 and /api/v1 are different paths, hence different requests.
    assert second.status_code == 409
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - IMAGE_PRICE)


async def test_a_refused_request_is_replayed_as_refused(stack: Stack) -> None:
    account = await stack.account(credits=100)
    bad = {"model": "test-video", "input": {}}

    first = await post_video(stack, account, "bad-1", bad)
    second = await post_video(stack, account, "bad-1", bad)

    assert first.status_code == second.status_code == 400
    assert second.json() == first.json() == {"error": "input.prompt is required", "field": "input.prompt"}
    assert await charges(stack, account) == 0
    too_long = await post_video(stack, account, "k" * 201)
    assert too_long.status_code == 400
    assert await charges(stack, account) == 0


async def test_a_retry_taking_over_after_a_crash_gets_the_job_already_made_and_charged_once(stack: Stack) -> None:
    from sqlalchemy import update

    from hypereal.store.tables import idempotency_keys

    account = await stack.account(credits=100)
    first = await post_video(stack, account, "crashed")
    assert first.status_code == 202, first.text
    # As a process leaves it when it dies after committing the job but before storing the answer.
    async with stack.services.db.write() as conn:
        await conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == "crashed")
            .values(status_code=None, response=None, created_at=1.0)
        )

    retried = await post_video(stack, account, "crashed")

    assert retried.status_code == 202, retried.text
    assert retried.json()["jobId"] == first.json()["jobId"]
    assert "idempotent-replayed" not in retried.headers  # answered afresh, from the job itself
    assert len(await all_jobs(stack.services)) == 1
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
    # And the answer is stored this time.
    assert (await post_video(stack, account, "crashed")).headers["idempotent-replayed"] == "true"


async def test_a_key_left_in_progress_by_a_dead_process_is_taken_over(stack: Stack) -> None:
    from hypereal.store.tables import idempotency_keys

    account = await stack.account(credits=100)
    async with stack.services.db.write() as conn:
        await conn.execute(
            idempotency_keys.insert().values(account_id=account.id, key="orphan", request_hash="0" * 64, created_at=1.0)
        )
    retried = await post_video(stack, account, "orphan")
    assert retried.status_code == 202, retried.text
    assert await charges(stack, account) == 1

    # A key in progress for a short while is still refused: its request may yet finish.
    async with stack.services.db.write() as conn:
        await conn.execute(
            idempotency_keys.insert().values(account_id=account.id, key="busy", request_hash="0" * 64, created_at=9e12)
        )
    busy = await post_video(stack, account, "busy")
    assert busy.status_code == 409
