"""Webhooks from the durable outbox on SQLite and PostgreSQL: retries until a 2xx with one
stable webhook-id, Standard Webhooks signatures, 410, the delivery log, manual redelivery and
secret rotation. The receiver is a real HTTP server on 127.0.0.1 (allowed explicitly)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from hypereal.services import Services
from hypereal.settings import Settings
from tests.conftest import TestAccount
from tests.integration.jobs_support import VIDEO_PRICE, Receiver, Stack, start_stack, wait_for

RETRY_SCHEDULE = "0.2,0.2,0.5"


@pytest.fixture
async def stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> Stack:
    return await start_stack(
        tmp_path,
        make_settings,
        make_services,
        make_client,
        outbound_allow="127.0.0.1/32",
        webhook_retry_schedule=RETRY_SCHEDULE,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.close()


async def secret_of(stack: Stack, account: TestAccount) -> str:
    response = await stack.client.get("/api/v1/account/webhook-secret", headers=account.headers)
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


async def deliveries(stack: Stack, account: TestAccount, job_id: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/jobs/{job_id}/deliveries", headers=account.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def wait_delivery(stack: Stack, account: TestAccount, job_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        found = await deliveries(stack, account, job_id)
        return found[0] if found and found[0]["status"] == status else None

    result: dict[str, Any] = await wait_for(reached, 30, what=f"the delivery of {job_id} to be {status}")
    return result


async def test_a_receiver_that_is_down_at_first_gets_the_signed_event_with_one_webhook_id(
    stack: Stack, receiver: Receiver
) -> None:
    receiver.statuses = [500, 302]
    receiver.headers = {1: {"Location": receiver.url + "/elsewhere"}}
    account = await stack.account(credits=100)
    secret = await secret_of(stack, account)

    job_id = (await stack.submit_video(account, webhook_url=receiver.url)).json()["jobId"]
    done = await stack.wait_done(account, job_id)
    delivered = await wait_delivery(stack, account, job_id, "delivered")

    assert len(receiver.received) == 3  # the redirect was not followed
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {delivered["messageId"]}
    for headers, body in receiver.received:
        assert headers["content-type"] == "application/json"
        assert headers["webhook-signature"].startswith("v1,")
        Webhook(secret).verify(body, headers)
    payload = orjson.loads(receiver.received[-1][1])
    assert payload == {
        "status": "completed",
        "outputUrl": done["outputUrl"],
        "outputs": [done["outputUrl"]],
        "jobId": job_id,
        "type": "video",
        "model": "test-video",
        "creditsUsed": VIDEO_PRICE,
    }
    assert all(body == receiver.received[0][1] for _, body in receiver.received)

    # A receiver checking with another account's secret refuses it.
    other = await stack.account(credits=1)
    headers, body = receiver.received[-1]
    with pytest.raises(WebhookVerificationError):
        Webhook(await secret_of(stack, other)).verify(body, headers)

    attempts = delivered["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["statusCode"] for a in attempts] == [500, 302, 200]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert attempts[0]["error"] == "HTTP 500"
    assert "not followed" in attempts[1]["error"]
    assert attempts[2]["error"] is None
    assert all(isinstance(a["latencyMs"], float) and a["latencyMs"] >= 0 for a in attempts)
    assert delivered["url"] == receiver.url and delivered["nextAttemptAt"] is None


async def test_a_failed_job_sends_its_error(stack: Stack, receiver: Receiver) -> None:
    account = await stack.account(credits=100)

    job_id = (await stack.submit_video(account, outcome="fail", webhook_url=receiver.url)).json()["jobId"]
    await wait_delivery(stack, account, job_id, "delivered")

    headers, body = receiver.received[0]
    Webhook(await secret_of(stack, account)).verify(body, headers)
    payload = orjson.loads(body)
    assert payload["status"] == "failed"
    assert payload["error"] == "Scripted failure"
    assert payload["jobId"] == job_id and payload["outputUrl"] is None
    assert payload["creditsUsed"] == 0


async def test_410_stops_retries(stack: Stack, receiver: Receiver) -> None:
    receiver.statuses = [410]
    account = await stack.account(credits=100)

    job_id = (await stack.submit_video(account, webhook_url=receiver.url)).json()["jobId"]
    gone = await wait_delivery(stack, account, job_id, "gone")

    assert len(gone["attempts"]) == 1
    assert gone["attempts"][0]["statusCode"] == 410 and gone["attempts"][0]["outcome"] == "gone"
    assert gone["nextAttemptAt"] is None
    assert len(receiver.received) == 1


async def test_retries_follow_the_schedule_then_stop(stack: Stack, receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    receiver.headers = {0: {"Retry-After": "1"}}
    account = await stack.account(credits=100)

    job_id = (await stack.submit_video(account, webhook_url=receiver.url)).json()["jobId"]
    failed = await wait_delivery(stack, account, job_id, "failed")

    attempts = failed["attempts"]
    assert len(attempts) == 1 + len(RETRY_SCHEDULE.split(","))
    assert all(a["statusCode"] == 503 and a["outcome"] == "retry" for a in attempts)
    # Retry-After: 1 outweighed the scheduled 0.2 s before the second attempt.
    assert attempts[1]["at"] - attempts[0]["at"] >= 0.9
    assert failed["nextAttemptAt"] is None
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1


async def test_manual_redelivery_resends_with_the_same_webhook_id(stack: Stack, receiver: Receiver) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, webhook_url=receiver.url)).json()["jobId"]
    first = await wait_delivery(stack, account, job_id, "delivered")

    response = await stack.client.post(f"/api/v1/jobs/{job_id}/deliveries/retry", headers=account.headers)

    assert response.status_code == 202, response.text
    assert response.json() == {"queued": True, "messageId": first["messageId"]}
    await receiver.wait_count(2)
    assert receiver.received[1][0]["webhook-id"] == receiver.received[0][0]["webhook-id"] == first["messageId"]
    assert receiver.received[1][1] == receiver.received[0][1]
    Webhook(await secret_of(stack, account)).verify(receiver.received[1][1], receiver.received[1][0])

    async def logged_twice() -> dict[str, Any] | None:
        found = (await deliveries(stack, account, job_id))[0]
        return found if len(found["attempts"]) == 2 and found["status"] == "delivered" else None

    again = await wait_for(logged_twice, what="the second attempt in the log")
    assert [a["statusCode"] for a in again["attempts"]] == [200, 200]

    no_hook = (await stack.submit_video(account)).json()["jobId"]
    await stack.wait_done(account, no_hook)
    refused = await stack.client.post(f"/api/v1/jobs/{no_hook}/deliveries/retry", headers=account.headers)
    assert refused.status_code == 409
    assert refused.json()["error"] == "This job has no webhook_url"


async def test_after_rotation_events_are_signed_with_both_secrets(stack: Stack, receiver: Receiver) -> None:
    account = await stack.account(credits=100)
    old = await secret_of(stack, account)

    rotated = await stack.client.post("/api/v1/account/webhook-secret/rotate", headers=account.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert await secret_of(stack, account) == new

    job_id = (await stack.submit_video(account, webhook_url=receiver.url)).json()["jobId"]
    await wait_delivery(stack, account, job_id, "delivered")

    headers, body = receiver.received[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)


async def test_audio_with_a_webhook_answers_202_at_once_and_delivers(stack: Stack, receiver: Receiver) -> None:
    account = await stack.account(credits=100)
    body = {"model": "test-audio", "input": {"text": "hello"}, "webhook_url": receiver.url}

    accepted = await stack.client.post("/api/v1/audio/generate", json=body, headers=account.headers)
    synchronous = await stack.client.post(
        "/api/v1/audio/generate", json={"model": "test-audio", "input": {"text": "hello"}}, headers=account.headers
    )

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["message"] == "Generation started. Result will be sent to your webhook URL."
    job_id = accepted.json()["jobId"]
    assert synchronous.status_code == 200, synchronous.text
    assert synchronous.json()["success"] is True and synchronous.json()["outputUrl"]
    await wait_delivery(stack, account, job_id, "delivered")
    payload = orjson.loads(receiver.received[0][1])
    assert payload["jobId"] == job_id and payload["type"] == "audio" and payload["status"] == "completed"
    assert len(receiver.received) == 1  # the synchronous request had no webhook
