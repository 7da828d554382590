"""Per-key limits over a moving hour: headers on every authenticated answer, 429 with Retry-After."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from hypereal.errors import RateLimited
from hypereal.ratelimit import MovingWindowMemory, RateLimiter, Window
from tests.conftest import TestAccount


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def window_headers(response: httpx.Response) -> tuple[int, int, int]:
    return (
        int(response.headers["x-ratelimit-limit"]),
        int(response.headers["x-ratelimit-remaining"]),
        int(response.headers["x-ratelimit-reset"]),
    )


async def test_limit_counts_down_then_refuses_with_retry_after(client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=3)
    remaining = []
    for _ in range(3):
        response = await client.get("/api/v1/account", headers=account.headers)
        assert response.status_code == 200
        limit, left, reset = window_headers(response)
        assert limit == 3
        remaining.append(left)
    assert remaining == [2, 1, 0]

    refused = await client.get("/v1/account", headers=account.headers)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "Rate limit exceeded"
    assert body["limit"] == 3
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 3600
    assert body["retry_after"] == retry_after
    assert window_headers(refused)[:2] == (3, 0)
    assert int(refused.headers["x-ratelimit-reset"]) == reset


async def test_limits_are_per_key(client: httpx.AsyncClient, make_account: Any, services: Any) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=1)
    _, second_key = await services.accounts.create_key(account.id, "second", 1)
    assert (await client.get("/v1/account", headers=account.headers)).status_code == 200
    assert (await client.get("/v1/account", headers=account.headers)).status_code == 429
    other = await client.get("/v1/account", headers={"x-api-key": second_key})
    assert other.status_code == 200
    assert window_headers(other)[:2] == (1, 0)


async def test_default_limit_comes_from_settings(
    make_settings: Any, make_services: Any, make_client: Any, make_account: Any
) -> None:
    services = await make_services(make_settings(default_rate_limit_per_hour=2))
    client = make_client(services)
    account: TestAccount = await make_account(services=services)
    statuses = [(await client.get("/v1/account", headers=account.headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_headers_on_every_authenticated_answer(client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=50)
    answers = [
        await client.get("/api/v1/account", headers=account.headers),
        await client.get("/api/v1/account/ledger", headers=account.headers),
        await client.get("/api/v1/account/ledger?limit=nope", headers=account.headers),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 400]
    assert [window_headers(answer)[1] for answer in answers] == [49, 48, 47]


async def test_refused_callers_do_not_use_up_a_limit(client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=2)
    for _ in range(5):
        response = await client.get("/v1/account", headers={"Authorization": "Bearer ck_unknown" + "x" * 40})
        assert response.status_code == 401
        assert "x-ratelimit-limit" not in response.headers
    assert window_headers(await client.get("/v1/account", headers=account.headers))[1] == 1


async def test_the_window_moves_instead_of_resetting_on_the_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    import hypereal.ratelimit

    clock = FakeClock(1000.0)
    monkeypatch.setattr(hypereal.ratelimit, "time", clock)
    limiter = RateLimiter()

    await limiter.hit("key_a", 3)
    clock.now = 1001.0  # a second later: hits closer together share an entry (see below)
    await limiter.hit("key_a", 3)
    clock.now = 2000.0
    last = await limiter.hit("key_a", 3)
    assert last == Window(limit=3, remaining=0, reset=4600)

    clock.now = 3000.0
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("key_a", 3)
    assert caught.value.retry_after == 1600  # until the first request leaves the window

    # An hourly bucket would start afresh at 3600 and allow three; the window frees only the
    # two requests made more than an hour ago.
    clock.now = 4601.0
    assert (await limiter.hit("key_a", 3)).remaining == 1
    assert (await limiter.hit("key_a", 3)).remaining == 0
    with pytest.raises(RateLimited):
        await limiter.hit("key_a", 3)


async def test_memory_keeps_only_the_hits_inside_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    import hypereal.ratelimit

    clock = FakeClock(1000.0)
    monkeypatch.setattr(hypereal.ratelimit, "time", clock)
    storage = MovingWindowMemory()
    for second in range(10):
        clock.now = 1000.0 + second
        assert storage.acquire_entry("busy", 100, 5)
    # Hits older than the window leave the key's record as the window moves past them.
    assert storage.get_moving_window("busy", 100, 5) == (1005.0, 5)
    assert storage.hits["busy"].times() == [1005.0, 1006.0, 1007.0, 1008.0, 1009.0]

    assert storage.acquire_entry("bulk", 10, 5, amount=7)
    assert not storage.acquire_entry("bulk", 10, 5, amount=4)
    assert storage.get_moving_window("bulk", 10, 5) == (1009.0, 7)
    assert storage.acquire_entry("bulk", 10, 5, amount=3)

    # A key nobody hits again is forgotten by the next sweep, not kept for the process's life.
    clock.now = 1009.0 + MovingWindowMemory.SWEEP_EVERY_SECONDS + 1
    assert storage.acquire_entry("other", 1, 5)
    assert set(storage.hits) == {"other"}


async def test_a_keys_memory_is_bounded_by_its_window_not_its_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hits close together share an entry; the count stays exact and none leaves the window
    before it would alone."""
    import hypereal.ratelimit

    clock = FakeClock(1000.0)
    monkeypatch.setattr(hypereal.ratelimit, "time", clock)
    storage = MovingWindowMemory()
    window = 3600
    for step in range(20_000):  # 20,000 hits over 10 s: two thousand a second
        clock.now = 1000.0 + step / 2000
        assert storage.acquire_entry("busy", 20_000, window)
    assert not storage.acquire_entry("busy", 20_000, window)  # the limit, exactly
    assert len(storage.hits["busy"].entries) <= 11  # one per second of the window's 3600, not one per hit
    assert storage.get_moving_window("busy", 20_000, window)[1] == 20_000

    # The first second's hits leave together, once the last of them is an hour old.
    clock.now = 1000.0 + window + 0.5
    assert storage.get_moving_window("busy", 20_000, window)[1] == 20_000
    clock.now = 1000.0 + window + 1.0
    assert storage.get_moving_window("busy", 20_000, window)[1] < 20_000


@pytest.mark.redis
async def test_processes_sharing_redis_share_one_limit(redis_url: str) -> None:
    # Two limiters stand in for two processes; concurrent hits must not both take the last slot.
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    key_id = "key_" + secrets.token_hex(8)

    async def attempt(limiter: RateLimiter) -> bool:
        try:
            await limiter.hit(key_id, 20)
            return True
        except RateLimited:
            return False

    outcomes = await asyncio.gather(*(attempt(first if n % 2 else second) for n in range(60)))
    assert outcomes.count(True) == 20

    with pytest.raises(RateLimited) as caught:
        await first.hit(key_id, 20)
    assert caught.value.retry_after >= 1
    assert caught.value.headers()["Retry-After"] == str(caught.value.retry_after)


@pytest.mark.redis
async def test_deployments_sharing_redis_count_apart(redis_url: str) -> None:
    key_id = "key_" + secrets.token_hex(8)
    tag = secrets.token_hex(4)
    blue, green = RateLimiter(redis_url, f"blue-{tag}:"), RateLimiter(redis_url, f"green-{tag}:")
    for _ in range(3):
        await blue.hit(key_id, 3)
    with pytest.raises(RateLimited):
        await blue.hit(key_id, 3)
    assert (await green.hit(key_id, 3)).remaining == 2
