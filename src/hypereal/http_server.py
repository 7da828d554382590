"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, its writes corked.

uvicorn writes a response's status line and headers as soon as the app sends them, and the
body in a second write: two system calls per small answer, and on a local connection each
one also runs the receiving side's network stack. Here the writes to a connection are held
and leave together, in one call, as soon as the response is complete, or at the end of the
loop's turn for a stream still going (so a stream's pieces produced at once leave at once).

Sending a finished response at once matters with few connections: held to the end of the
turn, the answer left only after whatever else that turn did (a settlement's commit), and
one connection's calls per second fell by a fifth.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hypereal.services import Services


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
    """uvicorn's httptools protocol over a corked transport, flushed when a response completes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.corked = CorkedTransport(transport, asyncio.get_running_loop())
        super().connection_made(self.corked)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.corked.flush()
        super().on_response_complete()


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
