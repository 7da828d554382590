"""A small HTTP/1.1 client for chat upstreams: keep-alive connections to one origin.

A chat gateway's own cost is mostly the HTTP client it calls upstreams with. aiohttp
builds a request object, a payload from a registry, a response object, a stream reader
and tracing hooks for each call, about a fifth of a forwarded call's time. Chat upstreams
need far less: POST a JSON body to one origin and read the answer, whole or as it arrives.
So this client writes the request in one buffer and parses the answer with httptools (the
parser uvicorn uses) from the connection's protocol callbacks.

What it does: a pool of keep-alive connections per origin (at most `max_connections`,
callers wait for a free one), TLS with the system's certificates, chunked and
content-length bodies, a connect timeout and a read timeout that counts from the last
bytes received, back-pressure on streamed bodies. A request on a reused connection that the
server had closed in the meantime (its keep-alive timer ran out while the request was on
its way) is sent once more on a new connection; nothing else is retried. It does not
follow redirects, use proxies, or ask for compressed bodies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BUFFERED_BYTES = 1 << 20
"""Of a streamed body not yet read: reading from the socket pauses above this."""


class ConnectionFailed(ConnectionError):
    """The upstream could not be reached or dropped the connection."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received_any = False
        self._parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.complete = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._headers_done = False

    # ------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self._parser is None:  # bytes nobody asked for: the connection can't be trusted
            self._fail(ConnectionFailed("Upstream sent bytes outside of an answer"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionFailed("Upstream asked to switch protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"Upstream sent a malformed answer: {exc}"))
        if self._buffered > MAX_BUFFERED_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._closing(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing(exc)

    # ------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._parser = None
        self._wake()

    # ------------------------------------------------ used by the pool

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.status, self.headers, self.keep_alive, self.complete = 0, {}, False, False
        self._headers_done, self.received_any = False, False
        self._chunks.clear()
        self._buffered = 0
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)

    async def headers_ready(self, idle_seconds: float) -> None:
        while not self._headers_done:
            await self._wait(idle_seconds)

    async def next_chunk(self, idle_seconds: float) -> bytes | None:
        """The next piece of the body, or None once it is complete."""
        while not self._chunks:
            if self.complete:
                return None
            await self._wait(idle_seconds)
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= MAX_BUFFERED_BYTES // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def whole_body(self, idle_seconds: float) -> bytes:
        while not self.complete:
            await self._wait(idle_seconds)
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self._error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------ internals

    async def _wait(self, idle_seconds: float) -> None:
        if self._error is not None:
            raise self._error
        if self.closed:
            raise ConnectionFailed("Upstream closed the connection")
        waiter = self._waiter = self.loop.create_future()
        # A bare timer on the waiter: asyncio.timeout() cost as much as the rest of the wait.
        timer = self.loop.call_later(idle_seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _closing(self, exc: BaseException | None) -> None:
        self.closed = True
        if self._parser is not None and self._error is None and not self.complete:
            if exc is None and self._headers_done and self._read_until_close():
                self.complete = True
            else:
                reason = f": {type(exc).__name__}" if exc else ""
                self._error = ConnectionFailed(f"Upstream closed the connection{reason}")
        self._wake()

    def _read_until_close(self) -> bool:
        """An answer with neither a length nor chunks: its body ends where the connection does."""
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self.close()
        self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no bytes from the upstream within the read timeout"))


class Http1Pool:
    """Keep-alive connections to the origin of `base_url`, shared by every call to it."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 256,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.base_path = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[_Connection] = set()

    def _head(self, method: str, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"{method} {self.base_path}{path} HTTP/1.1\r\nhost: {self._host_header}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        lines.append(f"content-length: {length}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The whole answer, whatever its status."""
        async with self.open(method, path, headers, body) as answer:
            return Answer(answer.status, answer.headers, await answer.read())

    def open(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Exchange:
        """An answer whose body is read as it arrives: `async with pool.open(...) as answer`."""
        return Exchange(self, self._head(method, path, headers, len(body)) + body)

    async def _acquire(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection, and whether it was reused."""
        await self._slots.acquire()
        try:
            while self._idle and not fresh:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection, True
                self._open.discard(connection)
            return await self._connect(), False
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except OSError as exc:
            raise ConnectionFailed(f"Could not connect to the upstream: {type(exc).__name__}") from exc
        # uvloop may call connection_made only after create_connection has returned.
        protocol.transport = transport
        self._open.add(protocol)
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.reusable:
            self._idle.append(connection)
        else:
            connection.close()
            self._open.discard(connection)
        self._slots.release()

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()


class Exchange:
    """One request and its answer; the connection goes back to the pool on exit."""

    def __init__(self, pool: Http1Pool, request: bytes) -> None:
        self._pool = pool
        self._request = request
        self._connection: _Connection | None = None
        self.status = 0
        self.headers: dict[str, str] = {}

    async def __aenter__(self) -> Exchange:
        pool = self._pool
        connection, reused = await pool._acquire()
        try:
            await self._send_on(connection)
        except ConnectionFailed:
            if not reused or connection.received_any:
                raise
            # The server closed this idle connection as the request went out: once more, anew.
            connection, _ = await pool._acquire(fresh=True)
            await self._send_on(connection)
        self._connection = connection
        self.status, self.headers = connection.status, connection.headers
        return self

    async def _send_on(self, connection: _Connection) -> None:
        """The request, and the answer's head; the connection goes back to the pool if that fails."""
        try:
            connection.send(self._request)
            await connection.headers_ready(self._pool.read_timeout)
        except BaseException:
            self._pool._release(connection)
            raise

    async def read(self) -> bytes:
        assert self._connection is not None
        return await self._connection.whole_body(self._pool.read_timeout)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive."""
        assert self._connection is not None
        while (chunk := await self._connection.next_chunk(self._pool.read_timeout)) is not None:
            yield chunk

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # An answer left unread can't share its connection with the next request.
            if not connection.complete:
                connection.close()
            self._pool._release(connection)
