"""`Idempotency-Key` on the charging media endpoints, on SQLite and PostgreSQL: the same key and
body give the same answer and one charge, also when the requests race; another body is a 409."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from hypereal.api import idempotency
from hypereal.api.idempotency import request_fingerprint
from hypereal.jobs.engine import Submission
from hypereal.keys import Principal
from hypereal.store.ledger import CHARGE
from hypereal.store.tables import idempotency_keys
from tests.conftest import TestAccount
from tests.integration.jobs_support import (
    IMAGE_PRICE,
    VIDEO_PRICE,
    Stack,
    StackFactory,
    all_jobs,
    credits,
    wait_for,
)

VIDEO_BODY = {"model": "test-video", "input": {"prompt": "a key"}}


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


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


async def set_claim(stack: Stack, account: TestAccount, key: str, **values: Any) -> None:
    """Change a key's record behind the API's back, as a process that died mid-request leaves it."""
    async with stack.services.db.write() as conn:
        await conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == key)
            .values(**values)
        )


async def claim_row(stack: Stack, account: TestAccount, key: str) -> Any:
    async with stack.services.db.read() as conn:
        query = select(idempotency_keys).where(
            idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == key
        )
        return (await conn.execute(query)).one()


async def test_a_retry_taking_over_after_a_crash_gets_the_job_already_made_and_charged_once(stack: Stack) -> None:
    account = await stack.account(credits=100)
    first = await post_video(stack, account, "crashed")
    assert first.status_code == 202, first.text
    # As a process leaves it when it dies after committing the job but before storing the
    # answer, once its claim has lapsed for want of renewal.
    await set_claim(stack, account, "crashed", status_code=None, response=None, claim_expires_at=1.0)

    retried = await post_video(stack, account, "crashed")

    assert retried.status_code == 202, retried.text
    assert retried.json()["jobId"] == first.json()["jobId"]
    assert "idempotent-replayed" not in retried.headers  # answered afresh, from the job itself
    assert len(await all_jobs(stack.services)) == 1
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
    # And the answer is stored this time.
    assert (await post_video(stack, account, "crashed")).headers["idempotent-replayed"] == "true"


async def test_a_claim_is_taken_over_once_it_lapses_and_only_by_the_same_request(stack: Stack) -> None:
    account = await stack.account(credits=100)
    body = orjson.dumps(VIDEO_BODY)
    same = request_fingerprint("POST", "/api/v1/videos/generate", body)

    async def post(key: str, content: bytes = body) -> httpx.Response:
        headers = {**account.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
        return await stack.client.post("/api/v1/videos/generate", content=content, headers=headers)

    async def claimed(key: str, request_hash: str, **values: Any) -> None:
        async with stack.services.db.write() as conn:
            await conn.execute(
                idempotency_keys.insert().values(
                    account_id=account.id, key=key, request_hash=request_hash, created_at=time.time(), **values
                )
            )

    # Held: its request may yet finish.
    await claimed("held", same, claimed_by="another", claim_expires_at=time.time() + 3600)
    held = await post("held")
    assert held.status_code == 409
    assert held.json()["error"] == "A request with this Idempotency-Key is still in progress"

    # Lapsed: its process stopped renewing it.
    await claimed("lapsed", same, claimed_by="another", claim_expires_at=1.0)
    lapsed = await post("lapsed")
    assert lapsed.status_code == 202, lapsed.text
    assert (await claim_row(stack, account, "lapsed")).status_code == 202

    # Lapsed, but another body under the key is another request, not a retry.
    await claimed("reused", "0" * 64, claimed_by="another", claim_expires_at=1.0)
    reused = await post("reused")
    assert reused.status_code == 409
    assert reused.json()["error"] == "This Idempotency-Key was already used with a different request"

    # Made before claims expired: held for ten minutes from its creation, as then.
    await claimed("legacy-busy", same)
    assert (await post("legacy-busy")).status_code == 409
    async with stack.services.db.write() as conn:
        await conn.execute(
            idempotency_keys.insert().values(account_id=account.id, key="legacy-old", request_hash=same, created_at=1.0)
        )
    assert (await post("legacy-old")).status_code == 202

    assert await charges(stack, account) == 2
    assert await stack.balance(account) == credits(100 - 2 * VIDEO_PRICE)


async def test_a_claim_is_renewed_while_its_request_runs(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "RENEW_SECONDS", 0.05)
    account = await stack.account(credits=100)
    headers = {**account.headers, "Idempotency-Key": "slow"}
    body = {"model": "test-image", "prompt": "slow", "seconds": 2}
    slow = asyncio.ensure_future(stack.client.post("/api/v1/images/generate", json=body, headers=headers))

    first = await wait_for(lambda: _claim_if_any(stack, account, "slow"), what="the claim")
    renewed = await wait_for(
        lambda: _renewed_past(stack, account, "slow", first.claim_expires_at), what="the claim to be renewed"
    )
    assert renewed.status_code is None and renewed.claimed_by == first.claimed_by

    answer = await slow
    assert answer.status_code == 200, answer.text
    assert (await claim_row(stack, account, "slow")).status_code == 200
    assert await charges(stack, account) == 1


async def _claim_if_any(stack: Stack, account: TestAccount, key: str) -> Any:
    async with stack.services.db.read() as conn:
        query = select(idempotency_keys).where(
            idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == key
        )
        return (await conn.execute(query)).first()


async def _renewed_past(stack: Stack, account: TestAccount, key: str, expiry: float) -> Any:
    row = await claim_row(stack, account, key)
    return row if row.claim_expires_at > expiry else None


async def test_submissions_racing_under_one_job_id_make_one_job_and_one_charge(stack: Stack) -> None:
    # What happens when a retry takes over the claim of a request that was alive after all:
    # both submit under the claim's job id at once.
    account = await stack.account(credits=100)
    principal = Principal(key_id=account.key_id, account_id=account.id, rate_limit_per_hour=None)
    spec = stack.services.catalog.models["test-video"]
    submission = Submission(spec, {"prompt": "racing"}, "auto", None, job_id="job_racing")

    made = await asyncio.gather(*(stack.services.jobs.submit(principal, submission) for _ in range(6)))

    assert {job.id for job in made} == {"job_racing"}
    assert [job.id for job in await all_jobs(stack.services)] == ["job_racing"]
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
