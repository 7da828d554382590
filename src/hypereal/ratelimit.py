"""Per-key request limits over a moving one-hour window, counted by the `limits` package.

In memory for one process; in Redis (HYPEREAL_REDIS_URL) so that every process behind a
load balancer counts against the same window instead of each allowing the full limit.

In memory the library's moving-window strategy runs over a storage of ours, called in
place rather than awaited. The library's own memory storage keeps a key's hits newest
first in a list, so each hit inserts at the front of every hit of the last hour, and a
timer thread copies that list every 10 ms: a key allowed a million requests an hour paid
for its whole hour on every call. Ours keeps each key's hits oldest first in a deque,
so a hit appends and the hits that left the window are dropped from the front; hits less
than a 3600th of the window apart share one entry, so that a key's memory is bounded by
the window, not by its traffic (one entry per hit held 345 MB an hour at 3,000 calls/s).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from limits import RateLimitItem, RateLimitItemPerHour, WindowStats
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MovingWindowSupport, Storage
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
    def __init__(self, redis_url: str | None = None, prefix: str = "") -> None:
        """`prefix` starts every Redis key of the counters (settings.effective_redis_prefix)."""
        self._shared: AsyncMovingWindow | None = None
        self._local: MovingWindow | None = None
        if redis_url:
            storage = RedisStorage(_limits_uri(redis_url), implementation="redispy", key_prefix=f"{prefix}rl")
            self._shared = AsyncMovingWindow(storage)
        else:
            self._local = MovingWindow(MovingWindowMemory())
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

    async def used(self, key_id: str, per_hour: int) -> int:
        """Requests the key made in the last hour, without counting one more."""
        item = self._item(per_hour)
        if self._local is not None:
            stats = self._local.get_window_stats(item, key_id)
        else:
            assert self._shared is not None
            stats = await self._shared.get_window_stats(item, key_id)
        return max(0, per_hour - stats.remaining)

    async def reset(self) -> None:
        if self._local is not None:
            self._local.storage.reset()
        elif self._shared is not None:
            await self._shared.storage.reset()


class MovingWindowMemory(Storage, MovingWindowSupport):
    """A `limits` storage for the moving-window strategy: one deque of hit times per key.

    Used from the event loop's thread only, so it takes no locks. A hit is in the window
    while it is younger than the window's length, as in the library's storages. Hits less
    than `window / ENTRIES_PER_WINDOW` after the first of the key's newest entry join that
    entry, which then counts them all as made at the time of the latest: they leave the
    window together with it, none earlier than it would alone, so the limit is never
    exceeded over any window. The counters of the library's other strategies are not kept.
    """

    SWEEP_EVERY_SECONDS = 60.0
    """How often keys nobody hit for a whole window are forgotten."""
    ENTRIES_PER_WINDOW = 3600
    """At most this many entries per key and window: one a second for an hour."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: dict[str, KeyHits] = {}
        self._longest_window = 0.0
        self._swept_at = time.time()

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        hits = self._current(key, now, expiry)
        if hits is None:
            hits = self.hits[key] = KeyHits()
        if hits.total + amount > limit:
            return False
        hits.add(now, amount, expiry / self.ENTRIES_PER_WINDOW)
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest hit still in the window, hits in the window); (now, 0) when none."""
        now = time.time()
        hits = self._current(key, now, expiry)
        if not hits:
            return now, 0
        return hits.entries[0].latest, hits.total

    def reset(self) -> int:
        forgotten = len(self.hits)
        self.hits.clear()
        return forgotten

    def clear(self, key: str) -> None:
        self.hits.pop(key, None)

    def check(self) -> bool:
        return True

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()  # nothing here fails the way a remote storage does

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("MovingWindowMemory serves the moving-window strategy only")

    def get(self, key: str) -> int:
        raise NotImplementedError("MovingWindowMemory serves the moving-window strategy only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("MovingWindowMemory serves the moving-window strategy only")

    def _current(self, key: str, now: float, expiry: float) -> KeyHits | None:
        """The key's hits with those that left the window dropped."""
        if expiry > self._longest_window:
            self._longest_window = expiry
        if now - self._swept_at > self.SWEEP_EVERY_SECONDS:
            self._sweep(now)
        hits = self.hits.get(key)
        if hits:
            hits.drop_before(now - expiry)
        return hits

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        idle = [
            key for key, hits in self.hits.items() if not hits or hits.entries[-1].latest <= now - self._longest_window
        ]
        for key in idle:
            del self.hits[key]


@dataclass(slots=True)
class Entry:
    """Hits made from `first` to `latest`, counted as made at `latest`."""

    first: float
    latest: float
    count: int


@dataclass(slots=True)
class KeyHits:
    """One key's hits, oldest first, and how many there are."""

    entries: deque[Entry] = field(default_factory=deque)
    total: int = 0

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, now: float, amount: int, spacing: float) -> None:
        newest = self.entries[-1] if self.entries else None
        if newest is not None and now - newest.first < spacing:
            newest.latest, newest.count = now, newest.count + amount
        else:
            self.entries.append(Entry(now, now, amount))
        self.total += amount

    def drop_before(self, oldest_kept: float) -> None:
        entries = self.entries
        while entries and entries[0].latest <= oldest_kept:
            self.total -= entries.popleft().count

    def times(self) -> list[float]:
        """When each entry's hits count as made."""
        return [entry.latest for entry in self.entries]


def _limits_uri(redis_url: str) -> str:
    """The `limits` spelling of a Redis URL: async+redis://, async+rediss://, async+redis+unix://."""
    scheme, _, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
