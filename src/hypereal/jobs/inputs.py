"""Input media checked at submission, and handed to the worker without a second download.

Every input URL of a request is fetched through the SSRF guard before anything is charged,
so an unreachable, private or mistyped input (text served as an image) is a 400 with no
trace in the ledger. The bytes are kept for a few minutes, bounded in total size, so the
worker in this process uses them instead of downloading again; a worker in another process
simply fetches them itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from hypereal.netguard import OutboundGuard
from hypereal.providers.base import InputFile

KEEP_SECONDS = 300.0
KEEP_BYTES = 256 * 1024 * 1024


class PrefetchingFetcher:
    """An `InputFetcher` that serves recently checked inputs from memory."""

    def __init__(self, guard: OutboundGuard, keep_seconds: float = KEEP_SECONDS, keep_bytes: int = KEEP_BYTES) -> None:
        self.guard = guard
        self.keep_seconds = keep_seconds
        self.keep_bytes = keep_bytes
        self._kept: OrderedDict[tuple[str, str], tuple[InputFile, float]] = OrderedDict()
        self._size = 0

    async def check(self, inputs: list[tuple[str, str]]) -> None:
        """Fetch every (url, kind) now; raises InputFetchFailed (400) for the first bad one."""
        fetched = await asyncio.gather(*(self.guard.fetch(url, kind=kind) for url, kind in inputs))
        for (url, kind), found in zip(inputs, fetched, strict=True):
            self._keep((url, kind), found)

    async def __call__(self, url: str, *, kind: str) -> InputFile:
        kept = self._kept.get((url, kind))
        if kept is not None and kept[1] > time.monotonic():
            return kept[0]
        return await self.guard.fetch(url, kind=kind)

    def _keep(self, key: tuple[str, str], found: InputFile) -> None:
        if len(found.data) > self.keep_bytes:
            return
        previous = self._kept.pop(key, None)
        if previous is not None:
            self._size -= len(previous[0].data)
        self._kept[key] = (found, time.monotonic() + self.keep_seconds)
        self._size += len(found.data)
        now = time.monotonic()
        while self._kept and (self._size > self.keep_bytes or next(iter(self._kept.values()))[1] < now):
            _, (dropped, _) = self._kept.popitem(last=False)
            self._size -= len(dropped.data)
