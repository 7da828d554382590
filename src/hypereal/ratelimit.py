"""Per-key request limits over a moving one-hour window, counted by the `limits` package.

In memory for one process; in Redis (HYPEREAL_REDIS_URL) so that every process behind a
load balancer counts against the same window instead of each allowing the full limit.

In memory the library's synchronous storage is used: a hit is a few list operations under
a lock, which is cheaper called in place than awaited. The asyncio flavour of the memory
storage starts a clean-up task, and with it a trip to a worker thread, on nearly every hit,
which cost a chat call about a tenth of its time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, WindowStats
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as MovingWindow

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
        self._shared: AsyncMovingWindow | None = None
        self._local: MovingWindow | None = None
        if redis_url:
            storage = RedisStorage(_limits_uri(redis_url), implementation="redispy", key_prefix=f"{namespace}-rl")
            self._shared = AsyncMovingWindow(storage)
        else:
            self._local = MovingWindow(MemoryStorage())
        self._items: dict[int, RateLimitItem] = {}

    def _item(self, per_hour: int) -> RateLimitItem:
        item = self._items.get(per_hour)
        if item is None:
            item = self._items[per_hour] = RateLimitItemPerHour(per_hour)
        return item

    async def hit(self, key_id: str, per_hour: int) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over the limit."""
        item = self._item(per_hour)
        stats: WindowStats
        if self._local is not None:
            allowed = self._local.hit(item, key_id)
            stats = self._local.get_window_stats(item, key_id)
        else:
            assert self._shared is not None
            allowed = await self._shared.hit(item, key_id)
            stats = await self._shared.get_window_stats(item, key_id)
        reset = math.ceil(stats.reset_time)
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(limit=per_hour, retry_after=retry_after, reset=reset)
        return Window(limit=per_hour, remaining=stats.remaining, reset=reset)

    async def reset(self) -> None:
        if self._local is not None:
            self._local.storage.reset()
        elif self._shared is not None:
            await self._shared.storage.reset()


def _limits_uri(redis_url: str) -> str:
    """The `limits` spelling of a Redis URL: async+redis://, async+rediss://, async+redis+unix://."""
    scheme, _, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
