"""Standard Webhooks signatures (checked with the reference `standardwebhooks` package),
the retry policy, and single delivery attempts against a local receiver."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hypereal import webhooks
from hypereal.netguard import OutboundGuard

BODY = json.dumps({"status": "completed", "jobId": "job_1", "outputUrl": "https://x/y.mp4"}).encode()


# -- secrets and signatures -------------------------------------------------------------------


def test_new_secret_shape() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhooks.new_secret() != secret


def test_signature_verifies_with_reference_package() -> None:
    secret = webhooks.new_secret()
    msg_id = webhooks.new_message_id()
    headers = webhooks.headers_for(secret, msg_id, int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_tampering_is_detected() -> None:
    secret = webhooks.new_secret()
    headers = webhooks.headers_for(secret, "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"completed", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})


def test_known_vector() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_rotated_secrets_each_verify() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    headers = webhooks.headers_for([old, new], "msg_rot", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(BODY, headers)


def test_bad_secrets_refused() -> None:
    with pytest.raises(ValueError, match="not base64"):
        webhooks.sign("whsec_***", "msg_1", 1, b"")
    with pytest.raises(ValueError, match="too short"):
        webhooks.sign("whsec_" + base64.b64encode(b"short").decode(), "msg_1", 1, b"")
    with pytest.raises(ValueError, match="at least one"):
        webhooks.headers_for([], "msg_1", 1, b"")


def test_message_ids_are_unique() -> None:
    ids = {webhooks.new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("msg_") and "." not in i for i in ids)


# -- schedule and delays ----------------------------------------------------------------------


def test_parse_schedule() -> None:
    assert webhooks.parse_schedule("5,300,1800") == (5.0, 300.0, 1800.0)
    assert webhooks.parse_schedule(" 5s, 5m ,30m,2h,1d,250ms ") == (5.0, 300.0, 1800.0, 7200.0, 86400.0, 0.25)
    assert webhooks.parse_schedule("0,1.5") == (0.0, 1.5)
    assert webhooks.parse_schedule("") == ()


def test_default_schedule_follows_standard_webhooks() -> None:
    as_text = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
    assert webhooks.parse_schedule(as_text) == webhooks.DEFAULT_SCHEDULE


@pytest.mark.parametrize("text", ["5,,300", "five", "-5", "5,300,x", "10w", "8d", "nan", "1e3", ",".join(["1"] * 51)])
def test_parse_schedule_errors(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid webhook retry schedule"):
        webhooks.parse_schedule(text)


def test_next_delay_follows_schedule_with_jitter() -> None:
    schedule = (5.0, 300.0, 1800.0)
    rng = random.Random(7)
    for attempt, base in enumerate(schedule, start=1):
        delays = [webhooks.next_delay(attempt, schedule, None, rng) for _ in range(200)]
        assert all(d is not None and base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(set(delays)) > 1  # jittered, not constant
    assert webhooks.next_delay(4, schedule, None, rng) is None
    assert webhooks.next_delay(1, (), None, rng) is None
    with pytest.raises(ValueError):
        webhooks.next_delay(0, schedule, None, rng)


def test_next_delay_honours_longer_retry_after() -> None:
    rng = random.Random(1)
    assert webhooks.next_delay(1, (5.0,), "120", rng) == 120.0
    assert webhooks.next_delay(1, (5.0,), 60.0, rng) == 60.0
    shorter = webhooks.next_delay(1, (300.0,), "10", rng)
    assert shorter is not None and 270.0 <= shorter <= 330.0
    capped = webhooks.next_delay(1, (5.0,), "99999999", rng)
    assert capped == webhooks.MAX_RETRY_AFTER
    # Retry-After never revives a schedule that is used up.
    assert webhooks.next_delay(2, (5.0,), "120", rng) is None
    garbage = webhooks.next_delay(1, (5.0,), "soon", rng)
    assert garbage is not None and garbage <= 5.5


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert webhooks.parse_retry_after(later, now=now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert webhooks.parse_retry_after(earlier, now=now) == 0.0
    assert webhooks.parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (201, "delivered"), (204, "delivered"), (299, "delivered"), (301, "retry"),
     (302, "retry"), (307, "retry"), (400, "retry"), (404, "retry"), (410, "gone"), (429, "retry"),
     (500, "retry"), (503, "retry"), (None, "retry")],
)  # fmt: skip
def test_classify(status: int | None, outcome: str) -> None:
    assert webhooks.classify(status) == outcome


# -- deliver() against a local receiver -------------------------------------------------------


@dataclass
class Receiver:
    base: str
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(base="")

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.calls.setdefault(name, []).append({"headers": dict(request.headers), "body": await request.read()})
        if name == "ok":
            return web.Response(status=204)
        if name == "broken":
            return web.Response(status=500, text="boom")
        if name == "gone":
            return web.Response(status=410)
        if name == "busy":
            return web.Response(status=429, headers={"Retry-After": "120"})
        if name == "moved":
            return web.Response(status=302, headers={"Location": "/hook/ok"})
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def guard() -> AsyncIterator[OutboundGuard]:
    g = OutboundGuard(allow=["127.0.0.1/32"], timeout=5.0)
    yield g
    await g.close()


async def test_deliver_success_is_signed(receiver: Receiver, guard: OutboundGuard) -> None:
    secret = webhooks.new_secret()
    attempt = await webhooks.deliver(guard, f"{receiver.base}/ok", BODY, "msg_ok", secret, 5.0)
    assert (attempt.status, attempt.outcome, attempt.error) == (204, "delivered", None)
    [call] = receiver.calls["ok"]
    assert call["body"] == BODY
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["webhook-id"] == "msg_ok"
    assert call["headers"]["webhook-timestamp"] == str(attempt.timestamp)
    Webhook(secret).verify(call["body"], call["headers"])


async def test_deliver_keeps_the_id_across_retries(receiver: Receiver, guard: OutboundGuard) -> None:
    secrets = [webhooks.new_secret(), webhooks.new_secret()]
    now = int(time.time())
    first = await webhooks.deliver(guard, f"{receiver.base}/broken", BODY, "msg_same", secrets, timestamp=now - 60)
    second = await webhooks.deliver(guard, f"{receiver.base}/broken", BODY, "msg_same", secrets, timestamp=now)
    assert [a.outcome for a in (first, second)] == ["retry", "retry"]
    assert (first.status, first.error, first.response) == (500, "HTTP 500", "boom")
    calls = receiver.calls["broken"]
    assert [c["headers"]["webhook-id"] for c in calls] == ["msg_same", "msg_same"]
    assert calls[0]["headers"]["webhook-signature"] != calls[1]["headers"]["webhook-signature"]
    for call in calls:
        Webhook(secrets[1]).verify(call["body"], call["headers"])


async def test_deliver_gone(receiver: Receiver, guard: OutboundGuard) -> None:
    attempt = await webhooks.deliver(guard, f"{receiver.base}/gone", BODY, "msg_g", webhooks.new_secret())
    assert (attempt.status, attempt.outcome) == (410, "gone")
    assert attempt.error is not None and "stop" in attempt.error


async def test_deliver_rate_limited_reports_retry_after(receiver: Receiver, guard: OutboundGuard) -> None:
    attempt = await webhooks.deliver(guard, f"{receiver.base}/busy", BODY, "msg_b", webhooks.new_secret())
    assert (attempt.status, attempt.outcome, attempt.retry_after) == (429, "retry", 120.0)
    delay = webhooks.next_delay(1, webhooks.DEFAULT_SCHEDULE, attempt.retry_after, random.Random(3))
    assert delay == 120.0


async def test_deliver_does_not_follow_redirects(receiver: Receiver, guard: OutboundGuard) -> None:
    attempt = await webhooks.deliver(guard, f"{receiver.base}/moved", BODY, "msg_m", webhooks.new_secret())
    assert (attempt.status, attempt.outcome) == (302, "retry")
    assert attempt.error == "HTTP 302: redirect to /hook/ok not followed"
    assert "ok" not in receiver.calls


async def test_deliver_to_private_address_without_allow_is_gone(receiver: Receiver) -> None:
    strict = OutboundGuard()
    try:
        attempt = await webhooks.deliver(strict, f"{receiver.base}/ok", BODY, "msg_p", webhooks.new_secret())
    finally:
        await strict.close()
    assert (attempt.status, attempt.outcome) == (None, "gone")
    assert attempt.error is not None and "not public" in attempt.error
    assert receiver.calls == {}
