"""The process bus survives losing its connection: it reconnects, tells its listeners that
messages may have been missed, and carries messages again; keys are not trusted meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
import redis.asyncio as redis

from hypereal.bus import Bus, PostgresBus, RedisBus
from hypereal.keys import BusInvalidation


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
        await _survives(RedisBus(redis_url), RedisBus(redis_url), cut)
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
