"""The outermost layer of every request: body size cap, rate-limit headers, metrics.

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware, which wraps every
response in an extra task and stream and costs a large share of a small request's time.

An exception that arrives after its answer was sent whole ends here. Starlette raises again
what its 500 handler already answered and logged, so that servers can log it too; uvicorn
would then close the connection without a word, and the client's next request on it would
be reset.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hypereal.errors import PayloadTooLarge
from hypereal.metrics import Metrics

RATE_LIMIT_SCOPE_KEY = "hypereal.ratelimit"


class Edge:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = [500]
        answered = False
        limit = self.max_body_bytes

        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    too_large = False
                if too_large:
                    await _reject_too_large(send, limit)
                    self._record(scope, 413, started)
                    return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"Request body larger than {limit} bytes", limit=limit)
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                window = scope.get(RATE_LIMIT_SCOPE_KEY)
                if window is not None:
                    message["headers"] = [*message.get("headers", []), *window.headers()]
            elif not message.get("more_body", False):
                answered = True
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except Exception:
            if not answered:
                raise
        finally:
            self._record(scope, status_holder[0], started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None)
        if template is None:
            template = "unmatched"
        else:
            # Routers are shared by /api/v1 and /v1; the route knows only its own part of the path.
            path: str = scope.get("path", "")
            template = next((p for p in ("/api/v1", "/v1") if path.startswith(p + "/")), "") + template
        self.metrics.observe_request(scope.get("method", ""), template, status, time.perf_counter() - started)


async def _reject_too_large(send: Send, limit: int) -> None:
    body = orjson.dumps({"error": f"Request body larger than {limit} bytes", "limit": limit})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
