"""A small message bus between processes: Redis pub/sub, else PostgreSQL LISTEN/NOTIFY.

It carries hints only ("a job is waiting", "a key was revoked"): every receiver re-reads the
database, so a lost message costs a short delay, never a wrong answer. A single process
(the embedded SQLite default) uses the in-process bus and needs nothing else.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str], None]


class Bus(abc.ABC):
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call `handler(data)` for every message on `channel`, from this or another process."""
        self._handlers.setdefault(channel, []).append(handler)

    def _dispatch(self, channel: str, data: str) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                handler(data)
            except Exception:
                log.exception("bus handler for %s failed", channel)

    async def start(self) -> None:
        return None

    async def publish(self, channel: str, data: str = "") -> None:
        """Deliver here at once, and to other processes when the bus reaches them."""
        self._dispatch(channel, data)
        try:
            await self._send(channel, data)
        except Exception:
            log.warning("could not publish %s to other processes; they will notice by polling", channel)

    @abc.abstractmethod
    async def _send(self, channel: str, data: str) -> None: ...

    async def close(self) -> None:
        return None

    @property
    def crosses_processes(self) -> bool:
        return True


class LocalBus(Bus):
    async def _send(self, channel: str, data: str) -> None:
        return None

    @property
    def crosses_processes(self) -> bool:
        return False


class RedisBus(Bus):
    PREFIX = "hypereal:"

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(self.PREFIX + "*")

        async def listen() -> None:
            async for message in pubsub.listen():
                if message.get("type") == "pmessage":
                    self._dispatch(message["channel"].decode()[len(self.PREFIX) :], message["data"].decode())

        self._listener = asyncio.create_task(listen(), name="redis-bus")

    async def _send(self, channel: str, data: str) -> None:
        # Our own copy was dispatched already; the echo only wakes waiters a second time.
        await self._redis.publish(self.PREFIX + channel, data)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._redis.aclose()


class PostgresBus(Bus):
    """LISTEN/NOTIFY on a dedicated connection, for PostgreSQL deployments without Redis."""

    CHANNEL = "hypereal_bus"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(self.CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        channel, _, data = payload.partition("\n")
        self._dispatch(channel, data)

    async def _send(self, channel: str, data: str) -> None:
        if self._conn is None:
            return
        async with self._lock:
            await self._conn.execute("SELECT pg_notify($1, $2)", self.CHANNEL, f"{channel}\n{data}")

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


def build_bus(redis_url: str | None, database_url: str) -> Bus:
    if redis_url:
        return RedisBus(redis_url)
    if database_url.startswith("postgresql"):
        return PostgresBus("postgresql://" + database_url.split("://", 1)[1])
    return LocalBus()
