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

    @property
    def connected(self) -> bool:
        """False while messages from other processes may be missed."""
        return True


class LocalBus(Bus):
    async def _send(self, channel: str, data: str) -> None:
        return None

    @property
    def crosses_processes(self) -> bool:
        return False


class RedisBus(Bus):
    """Channels are `prefix + name`: Redis pub/sub is one namespace for the whole server, whatever
    db a client selected, so deployments sharing a server are told apart by their prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        import redis.asyncio as redis

        self.prefix = prefix
        self._redis: Any = redis.Redis.from_url(url)
        self._listener: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        pubsub = await self._subscribe()
        self._listener = asyncio.create_task(self._listen(pubsub), name="redis-bus")

    async def _subscribe(self) -> Any:
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(self.prefix + "*")  # settings allow no glob characters in it
        self._connected = True
        return pubsub

    async def _listen(self, pubsub: Any) -> None:
        delay = 0.5
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                    # Whatever was published while we were away is lost: tell every listener
                    # that something may have changed (caches drop, workers look for jobs).
                    for channel in list(self._handlers):
                        self._dispatch(channel, "")
                    delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._dispatch(message["channel"].decode()[len(self.prefix) :], message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis bus disconnected (%s); reconnecting in %.1f s", exc, delay)
            self._connected = False
            pubsub = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _send(self, channel: str, data: str) -> None:
        # Our own copy was dispatched already; the echo only wakes waiters a second time.
        await self._redis.publish(self.prefix + channel, data)

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
        self._connected = False
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(self.CHANNEL, self._on_notify)
        self._conn.add_termination_listener(self._on_lost)
        self._connected = True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        channel, _, data = payload.partition("\n")
        self._dispatch(channel, data)

    def _on_lost(self, _conn: Any) -> None:
        self._connected = False
        if not self._closing:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="postgres-bus")

    async def _reconnect(self) -> None:
        delay = 0.5
        while not self._closing:
            log.warning("PostgreSQL bus disconnected; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception:
                delay = min(delay * 2, 10.0)
                continue
            for channel in list(self._handlers):  # what was sent meanwhile is lost
                self._dispatch(channel, "")
            return

    async def _send(self, channel: str, data: str) -> None:
        if self._conn is None or not self._connected:
            return
        async with self._lock:
            await self._conn.execute("SELECT pg_notify($1, $2)", self.CHANNEL, f"{channel}\n{data}")

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnecting
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


def build_bus(redis_url: str | None, database_url: str, redis_prefix: str) -> Bus:
    if redis_url:
        return RedisBus(redis_url, redis_prefix)
    if database_url.startswith("postgresql"):
        return PostgresBus("postgresql://" + database_url.split("://", 1)[1])
    return LocalBus()
