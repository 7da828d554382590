"""Per-key request limits over a moving one-hour window, counted by the `limits` package.

In memory for one process; in Redis (HYPEREAL_REDIS_URL) so that every process behind a
load balancer counts against the same window instead of each allowing the full limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from hypereal.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    remaining: int
    reset: int
    """Unix time at which one more request becomes available."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class RateLimiter:
    def __init__(self, redis_url: str | None = None, namespace: str = "hypereal") -> None:
        storage: Storage = (
            RedisStorage(_limits_uri(redis_url), implementation="redispy", key_prefix=f"{namespace}-rl")
            if redis_url
            else MemoryStorage()
        )
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[int, RateLimitItem] = {}

    def _item(self, per_hour: int) -> RateLimitItem:
        item = self._items.get(per_hour)
        if item is None:
            item = self._items[per_hour] = RateLimitItemPerHour(per_hour)
        return item

    async def hit(self, key_id: str, per_hour: int) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over the limit."""
        item = self._item(per_hour)
        allowed = await self._limiter.hit(item, key_id)
        stats = await self._limiter.get_window_stats(item, key_id)
        reset = math.ceil(stats.reset_time)
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(limit=per_hour, retry_after=retry_after, reset=reset)
        return Window(limit=per_hour, remaining=stats.remaining, reset=reset)

    async def reset(self) -> None:
        await self._storage.reset()


def _limits_uri(redis_url: str) -> str:
    """The `limits` spelling of a Redis URL: async+redis://, async+rediss://, async+redis+unix://."""
    scheme, _, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
