"""API keys: generation, hashing, and authentication without a database trip per request.

Keys are `ck_` + 43 URL-safe characters (256 random bits). With that much entropy a plain
SHA-256 is the right hash: it cannot be brute-forced and costs a microsecond, unlike
password hashes made slow on purpose.

Authenticated keys are cached in memory. Revocation invalidates the cache in every process:
over the process bus (Redis pub/sub or PostgreSQL NOTIFY) when there is one, else through
an epoch file in the data directory (one `stat` per request, no database). The cache entries also expire, as a
backstop for deployments with neither.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypereal.bus import Bus
from hypereal.errors import Unauthorized
from hypereal.routing.preferences import Preferences
from hypereal.store import accounts as store
from hypereal.store.db import Database

KEY_PREFIX = "ck_"
VISIBLE_PREFIX_LENGTH = 11
log = logging.getLogger(__name__)


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_PREFIX_LENGTH]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for."""

    key_id: str
    account_id: str
    rate_limit_per_hour: int | None
    preferences: Preferences | None = None
    """The key's default provider preferences, which a request's own replace."""


class Invalidation(abc.ABC):
    """Tells every process that cached keys may be stale."""

    def changed(self) -> bool:
        """Cheap synchronous check, asked on every request; True means drop the cache."""
        return False

    async def start(self, on_change: Any) -> None:  # noqa: B027 - listening is optional
        """Begin listening; `on_change()` is called when another process revokes a key."""

    @abc.abstractmethod
    async def publish(self) -> None: ...

    async def close(self) -> None:
        return None


class EpochFileInvalidation(Invalidation):
    """For processes sharing a data directory: revocation rewrites a small file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Asked on every request: a file that exists is found without raising (a missing one
        # cost an exception per call). Made once, as a revocation would make it.
        if not path.exists():
            with contextlib.suppress(OSError):
                self._write()
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int]:
        # Each publish replaces the file with a new inode, so two revocations within one tick of
        # a coarse filesystem clock still differ.
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (status.st_ino, status.st_mtime_ns)

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            return True
        return False

    async def publish(self) -> None:
        self._write()
        # Our own cache is cleared by the caller; don't clear it a second time on the next check.
        self._seen = self._stamp()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of our own: processes revoking at the same moment must not replace
        # each other's half-written file (the loser's rename would fail after its revocation).
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            file.write(str(time.time_ns()))
        os.replace(temporary, self.path)


class BusInvalidation(Invalidation):
    """For processes that share a bus (Redis pub/sub or PostgreSQL NOTIFY)."""

    CHANNEL = "keys.changed"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def changed(self) -> bool:
        # While the bus is down a revocation elsewhere would go unheard: trust no cached key.
        return not self.bus.connected

    async def start(self, on_change: Any) -> None:
        self.bus.subscribe(self.CHANNEL, lambda _data: on_change())

    async def publish(self) -> None:
        await self.bus.publish(self.CHANNEL)


class KeyService:
    def __init__(self, db: Database, invalidation: Invalidation, cache_seconds: float = 60.0) -> None:
        self.db = db
        self.invalidation = invalidation
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._last_used: dict[str, float] = {}

    async def start(self) -> None:
        await self.invalidation.start(self._cache.clear)

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key or not raw_key.startswith(KEY_PREFIX):
            raise Unauthorized()
        if self.invalidation.changed():
            self._cache.clear()
        digest = hash_key(raw_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            principal = cached[0]
        else:
            async with self.db.read() as conn:
                record = await store.key_by_hash(conn, digest)
            if record is None or record.revoked_at is not None:
                raise Unauthorized()
            preferences = Preferences.stored(record.provider_preferences)
            principal = Principal(record.id, record.account_id, record.rate_limit_per_hour, preferences)
            self._cache[digest] = (principal, now + self.cache_seconds)
        self._last_used[principal.key_id] = time.time()
        return principal

    def last_used(self, key_id: str, recorded: float | None) -> float | None:
        """When the key was last used: `recorded` in the database, or later if not yet flushed."""
        pending = self._last_used.get(key_id)
        return max(pending, recorded or 0.0) if pending is not None else recorded

    async def revoked(self) -> None:
        """Call after revoking a key: drop our cache and tell the other processes."""
        await self.changed()

    async def changed(self) -> None:
        """Call after changing a key: drop our cache and tell the other processes."""
        self._cache.clear()
        await self.invalidation.publish()

    async def flush_last_used(self) -> None:
        """Write `last_used_at` in one batch instead of one write per request."""
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        try:
            async with self.db.write() as conn:
                await store.touch_keys(conn, pending)
        except Exception:
            log.exception("could not record key usage; will retry")
            for key_id, when in pending.items():
                self._last_used.setdefault(key_id, when)

    async def close(self) -> None:
        await self.flush_last_used()
        await self.invalidation.close()
