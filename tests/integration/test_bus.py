"""The process bus survives losing its connection: it reconnects, tells its listeners that
messages may have been missed, and carries messages again; keys are not trusted meanwhile."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import asyncpg
import pytest
import redis.asyncio as redis

from hypereal.bus import Bus, PostgresBus, RedisBus
from hypereal.keys import BusInvalidation
from hypereal.settings import load_settings

PREFIX = "hypereal-test:"


async def _eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _survives(sender: Bus, receiver: Bus, cut: Callable[[], object]) -> None:
    heard: list[str] = []
    receiver.subscribe("test.channel", heard.append)
    invalidation = BusInvalidation(receiver)
    await sender.start()
    await receiver.start()
    try:
        await sender.publish("test.channel", "before")
        await _eventually(lambda: "before" in heard)

        await cut()  # type: ignore[misc]
        await _eventually(lambda: not receiver.connected)
        assert invalidation.changed(), "cached keys must not be trusted while revocations can be missed"

        await _eventually(lambda: receiver.connected)
        assert "" in heard, "listeners are told that messages may have been missed"
        assert not invalidation.changed()
        await sender.publish("test.channel", "after")
        await _eventually(lambda: "after" in heard)
    finally:
        await sender.close()
        await receiver.close()


@pytest.mark.redis
async def test_the_redis_bus_reconnects_after_its_connection_is_killed(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)

    async def cut() -> None:
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

    try:
        await _survives(RedisBus(redis_url, PREFIX), RedisBus(redis_url, PREFIX), cut)
    finally:
        await admin.aclose()


@pytest.mark.postgres
async def test_the_postgres_bus_reconnects_after_its_backend_is_terminated(new_postgres_url: Callable[[], str]) -> None:
    url = new_postgres_url()
    dsn = "postgresql://" + url.split("://", 1)[1]
    receiver = PostgresBus(dsn)

    async def cut() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = $1",
                dsn.rsplit("/", 1)[1],
            )
        finally:
            await conn.close()

    await _survives(PostgresBus(dsn), receiver, cut)


@pytest.mark.redis
async def test_deployments_sharing_a_redis_server_do_not_hear_each_other(redis_url: str) -> None:
    """Pub/sub ignores the db number: each deployment's prefix, by default one per db, keeps them apart."""
    base = redis_url.rsplit("/", 1)[0]
    first = load_settings(environ={}, redis_url=f"{base}/0")
    second = load_settings(environ={}, redis_url=f"{base}/1")
    assert first.effective_redis_prefix != second.effective_redis_prefix
    tag = secrets.token_hex(4)
    pairs = [
        (first.effective_redis_prefix, second.effective_redis_prefix),
        (f"blue-{tag}:", f"green-{tag}:"),
    ]
    for ours, theirs in pairs:
        await _apart(redis_url, ours, theirs, f"test.{tag}")


async def _apart(redis_url: str, ours: str, theirs: str, channel: str) -> None:
    us, us_too, them = RedisBus(redis_url, ours), RedisBus(redis_url, ours), RedisBus(redis_url, theirs)
    heard: dict[str, list[str]] = {"us": [], "us_too": [], "them": []}
    for name, bus in (("us", us), ("us_too", us_too), ("them", them)):
        bus.subscribe(channel, heard[name].append)
        await bus.start()
    try:
        await us.publish(channel, "ours")
        await them.publish(channel, "theirs")
        # A bus hears what it publishes at once and again as Redis echoes it.
        expected = {"us": ["ours", "ours"], "us_too": ["ours"], "them": ["theirs", "theirs"]}
        await _eventually(lambda: heard == expected)
        await asyncio.sleep(0.2)  # anything crossing over would have arrived by now
        assert heard == expected
    finally:
        for bus in (us, us_too, them):
            await bus.close()
