"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, its writes corked.

uvicorn writes a response's status line and headers as soon as the app sends them, and the
body in a second write: two system calls per small answer, and on a local connection each
one also runs the receiving side's network stack. Here the writes to a connection are held
and leave together, in one call, as soon as the response is complete, or at the end of the
loop's turn for a stream still going (so a stream's pieces produced at once leave at once).

Sending a finished response at once matters with few connections: held to the end of the
turn, the answer left only after whatever else that turn did (a settlement's commit), and
one connection's calls per second fell by a fifth.

A request's head (request line and header fields) is limited in bytes and in fields, as
nginx, gunicorn and h11 limit theirs; past either limit the answer is 431 and the
connection closes. httptools keeps no limit of its own: it gathers a header's value piece by
piece, copying it whole for each piece, so a header of megabytes costs its square. The
bytes are counted as they arrive, before the parser sees them, and only while a head is
being read: one addition per read. The fields are counted once the head is complete.
A refused head is not read further, but what the client still sends is discarded for a
moment (at most `LINGER_BYTES`, `LINGER_SECONDS`) before the connection closes, as nginx
does: closed with unread data, a socket answers with a reset, and the client would lose
the 431 it was sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hypereal.services import Services

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
HEAD_END = b"\r\n\r\n"
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
log = logging.getLogger(__name__)


class CorkedTransport:
    """A transport whose writes wait for `flush()`, called at the latest at the end of the turn."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending or ()))

    def __getattr__(self, name: str) -> Any:
        # Reading pauses, extra info, protocol switches: the real transport's, unchanged.
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a corked transport, flushed when a response completes,
    with limits on the request head (`with_limits` for others than the defaults)."""

    max_head_bytes = DEFAULT_MAX_HEAD_BYTES
    max_headers = DEFAULT_MAX_HEADERS
    refused_at = 0
    """`head_bytes` when the head was refused; 0 while none was."""

    @classmethod
    def with_limits(cls, *, max_head_bytes: int, max_headers: int) -> type[HttpProtocol]:
        """The protocol with other head limits (uvicorn takes a class and makes one per connection)."""
        return type(cls.__name__, (cls,), {"max_head_bytes": max_head_bytes, "max_headers": max_headers})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.head_bytes = 0
        """Bytes received since the current head began; -1 while no head is being read."""
        self.corked = CorkedTransport(transport, asyncio.get_running_loop())
        super().connection_made(self.corked)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.head_bytes >= 0:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_head_bytes:
                if self.refused_at:
                    if self.head_bytes - self.refused_at > LINGER_BYTES:
                        self.transport.close()
                    return
                if self._head_size(data) > self.max_head_bytes:
                    self._refuse_head(f"Request header fields larger than {self.max_head_bytes} bytes")
                    return
        super().data_received(data)

    def _head_size(self, data: bytes) -> int:
        """The head's bytes so far; `data`, the latest read, may end it and begin the body."""
        end = data.find(HEAD_END)
        return self.head_bytes if end < 0 else self.head_bytes - len(data) + end + len(HEAD_END)

    def on_headers_complete(self) -> None:
        self.head_bytes = -1
        if len(self.headers) <= self.max_headers:
            super().on_headers_complete()
            return
        # Answered like uvicorn's own refusals (its concurrency limit): by an app of one answer.
        app, self.app = self.app, _too_many_headers(self.max_headers)
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self.head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.corked.flush()
        super().on_response_complete()

    def _refuse_head(self, message: str) -> None:
        log.info("refused a request head: %s", message)
        body = orjson.dumps({"error": message})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.refused_at = self.head_bytes
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _too_many_headers(limit: int) -> Any:
    message = f"More than {limit} request header fields"
    body = orjson.dumps({"error": message, "limit": limit})

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        log.info("refused a request head: %s", message)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 431, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return answer


class Server(uvicorn.Server):
    """uvicorn's server, closing the process's services as it shuts down.

    Once shut down, uvicorn raises the signal that stopped it again, its default handler back
    in place: a SIGTERM then ends the process before any code after `serve()` runs. Closed
    within the shutdown, the services stop the in-process worker (its leases released), flush
    queued ledger writes and close the database (SQLite's log truncated, not left behind).
    """

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self._closed = False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await self.close_services()

    async def close_services(self) -> None:
        if not self._closed:
            self._closed = True
            await self.services.close()
