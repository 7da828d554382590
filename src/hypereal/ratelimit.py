"""Per-key request limits over a moving one-hour window.

In memory for one process; in Redis (HYPEREAL_REDIS_URL, counted by the `limits` package)
so that every process behind a load balancer counts against the same window instead of
each allowing the full limit.

The in-memory window is our own rather than `limits`' MemoryStorage, which prepends every
request to a list and, at every request, copies that list on a worker thread to drop the
expired ones: with a high per-key limit each request cost grew with the hour's traffic.
Here each key keeps its request times oldest first, so a request costs the same whatever
the traffic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from hypereal.errors import RateLimited

WINDOW_SECONDS = 3600
SWEEP_SECONDS = 60.0


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


class LocalWindows:
    """The moving windows of one process: each key's request times in the last hour, oldest first."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int, now: float) -> tuple[bool, int, float]:
        """Count a request at `now` unless `limit` are in the window: (allowed, in the window, window start)."""
        if now >= self._next_sweep:
            self._sweep(now)
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque()
        cutoff = now - WINDOW_SECONDS
        while times and times[0] <= cutoff:
            times.popleft()
        allowed = len(times) < limit
        if allowed:
            times.append(now)
        return allowed, len(times), times[0] if times else now

    def _sweep(self, now: float) -> None:
        """Forget the keys that made no request for an hour, so idle keys hold no memory."""
        self._next_sweep = now + SWEEP_SECONDS
        cutoff = now - WINDOW_SECONDS
        for key in [key for key, times in self._times.items() if not times or times[-1] <= cutoff]:
            del self._times[key]

    def clear(self) -> None:
        self._times.clear()


class RateLimiter:
    def __init__(self, redis_url: str | None = None, namespace: str = "hypereal") -> None:
        self._local = None if redis_url else LocalWindows()
        self._shared: MovingWindowRateLimiter | None = None
        self._storage: RedisStorage | None = None
        if redis_url:
            self._storage = RedisStorage(_limits_uri(redis_url), implementation="redispy", key_prefix=f"{namespace}-rl")
            self._shared = MovingWindowRateLimiter(self._storage)
        self._items: dict[int, RateLimitItem] = {}

    def _item(self, per_hour: int) -> RateLimitItem:
        item = self._items.get(per_hour)
        if item is None:
            item = self._items[per_hour] = RateLimitItemPerHour(per_hour)
        return item

    async def hit(self, key_id: str, per_hour: int) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over the limit."""
        if self._local is not None:
            now = time.time()
            allowed, counted, start = self._local.hit(key_id, per_hour, now)
            reset_time = start + WINDOW_SECONDS
            if not allowed:
                retry_after = max(1, math.ceil(reset_time - now))
                raise RateLimited(limit=per_hour, retry_after=retry_after, reset=math.ceil(reset_time))
            return Window(limit=per_hour, remaining=per_hour - counted, reset=math.ceil(reset_time))
        assert self._shared is not None
        item = self._item(per_hour)
        allowed = await self._shared.hit(item, key_id)
        stats = await self._shared.get_window_stats(item, key_id)
        reset = math.ceil(stats.reset_time)
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(limit=per_hour, retry_after=retry_after, reset=reset)
        return Window(limit=per_hour, remaining=stats.remaining, reset=reset)

    async def reset(self) -> None:
        if self._local is not None:
            self._local.clear()
        if self._storage is not None:
            await self._storage.reset()


def _limits_uri(redis_url: str) -> str:
    """The `limits` spelling of a Redis URL: async+redis://, async+rediss://, async+redis+unix://."""
    scheme, _, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
