"""What every upstream queue double (and the recording proxy of tests/clients) shares: an
aiohttp server on a free local port, injected faults per route, a delay that ends when the
double stops, and `async with` use."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any, Self

from aiohttp import web


class LocalServer:
    client_max_size = 1024**2
    """The largest request body a route may read, aiohttp's default."""

    def __init__(self) -> None:
        self.delay_seconds = 0.0
        self.base_url = ""
        self._faults: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def fail_next(self, route: str, status: int, body: Any = None, times: int = 1) -> None:
        """The next `times` calls of `route` answer `status` with `body`."""
        self._faults[route].extend([(status, body)] * times)

    def _next_fault(self, route: str) -> tuple[int, Any, dict[str, str] | None] | None:
        """An injected (status, body, headers) for `route`, if one is due; 429s carry Retry-After."""
        if not self._faults[route]:
            return None
        status, body = self._faults[route].pop(0)
        return status, body, {"Retry-After": "7"} if status == 429 else None

    def file_url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"

    async def start(self) -> Self:
        app = web.Application(client_max_size=self.client_max_size)
        self._routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def _hold(self) -> None:
        """Wait `delay_seconds`, or less if the double is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.delay_seconds)

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
