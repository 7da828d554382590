"""A proxy in front of any double that fails on command, the way real upstreams fail.

Every request goes to `target` (a double's base URL) unchanged, its answer streamed back
chunk by chunk, unless a fault says otherwise:

    fail(status, times=1, retry_after=None, body=None)   the next `times` requests get `status`
    fail_share(share, status=503, seed=0)                 that share of the requests, at random
                                                          (seeded: a run is repeatable)
    down() / up()                                         connections are closed unanswered
    hang(seconds)                                         no answer for that long (timeouts)
    slow_first_byte(seconds)                              the answer's first byte that late
    clear()                                               no fault any more

`requests` counts what reached the proxy and `failed` what it failed. The error bodies are
OpenAI-shaped, which every adapter reads. Run it like a double (`start()`/`stop()`, or in
`BackgroundServer`); `url` keeps the target's path, so it replaces the double's URL as is.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class FaultyProxy:
    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path
        self.url = ""
        self.requests = 0
        self.failed = 0
        self._next: list[tuple[int, str | None, Any]] = []
        self._share = 0.0
        self._share_status = 503
        self._random = random.Random(0)
        self._down = False
        self._hang = 0.0
        self._first_byte = 0.0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- faults ------------------------------------------------------------------------

    def fail(self, status: int, times: int = 1, retry_after: float | None = None, body: Any = None) -> None:
        header = None if retry_after is None else f"{retry_after:g}"
        self._next.extend([(status, header, body)] * times)

    def fail_share(self, share: float, status: int = 503, seed: int = 0) -> None:
        self._share, self._share_status, self._random = share, status, random.Random(seed)

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def hang(self, seconds: float) -> None:
        self._hang = seconds

    def slow_first_byte(self, seconds: float) -> None:
        self._first_byte = seconds

    def clear(self) -> None:
        self._next.clear()
        self._share = self._hang = self._first_byte = 0.0
        self._down = False

    # ---- serving -----------------------------------------------------------------------

    async def start(self) -> FaultyProxy:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{self.path}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        if self._down:
            self.failed += 1
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("down on command")
        if self._hang:
            await asyncio.sleep(self._hang)
        fault = self._fault()
        if fault is not None:
            self.failed += 1
            status, retry_after, payload = fault
            headers = {"Retry-After": retry_after} if retry_after else {}
            error = payload or {"error": {"message": f"injected {status}", "type": "server_error"}}
            return web.json_response(error, status=status, headers=headers)
        assert self._session is not None
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.origin + request.path_qs, data=body, headers=headers
        ) as upstream:
            if self._first_byte:
                await asyncio.sleep(self._first_byte)
            answer = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await answer.prepare(request)
            async for chunk in upstream.content.iter_any():
                await answer.write(chunk)
            await answer.write_eof()
            return answer

    def _fault(self) -> tuple[int, str | None, Any] | None:
        if self._next:
            return self._next.pop(0)
        if self._share and self._random.random() < self._share:
            return (self._share_status, None, None)
        return None
