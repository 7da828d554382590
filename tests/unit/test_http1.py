"""The chat upstreams' HTTP/1.1 client against servers that send exactly the bytes under test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hypereal.providers.http1 import ConnectionFailed, Http1Pool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def json_answer(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.fixture
async def pools() -> AsyncIterator[list[Http1Pool]]:
    made: list[Http1Pool] = []
    yield made
    for pool in made:
        await pool.close()


def pool_for(pools: list[Http1Pool], url: str, **options: float) -> Http1Pool:
    pool = Http1Pool(url, **options)  # type: ignore[arg-type]
    pools.append(pool)
    return pool


async def test_requests_share_one_kept_alive_connection(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(json_answer(b'{"ok": true}'))

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        answers = [await pool.request("POST", "/chat", {"authorization": "Bearer k"}, b'{"a": 1}') for _ in range(3)]

    assert [(a.status, a.body) for a in answers] == [(200, b'{"ok": true}')] * 3
    assert answers[0].headers["content-type"] == "application/json"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert b"\r\nauthorization: Bearer k\r\n" in first and b"\r\ncontent-length: 8\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a": 1}')


async def test_a_chunked_body_arrives_in_pieces_and_whole(pools: list[Http1Pool]) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"8\r\ndata: 1\n\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"8\r\ndata: 2\n\r\n0\r\n\r\n")

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        pieces = []
        async with pool.open("POST", "/s", {}, b"{}") as answer:
            async for chunk in answer.chunks():
                pieces.append(chunk)
                release.set()
        whole = await pool.request("POST", "/s", {}, b"{}")

    assert pieces == [b"data: 1\n", b"data: 2\n"]
    assert whole.body == b"data: 1\ndata: 2\n"
    assert server.connections == 1


async def test_a_body_without_length_ends_with_the_connection(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        answer = await pool.request("POST", "/x", {}, b"")
        again = await pool.request("POST", "/x", {}, b"")

    assert answer.body == b"all of it" == again.body
    assert server.connections == 2, "an answer that closes its connection is not reused"


async def test_a_body_cut_short_is_an_error_not_a_short_answer(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        with pytest.raises(ConnectionFailed):
            await pool.request("POST", "/x", {}, b"")


async def test_an_idle_connection_closed_by_the_server_is_replaced_once(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(json_answer(b"{}"))
        await writer.drain()
        # A keep-alive timer running out: the server reads the next request's first bytes, then hangs up.
        await reader.read(1)

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        await pool.request("POST", "/x", {}, b"")
        answer = await pool.request("POST", "/x", {}, b"")

    assert answer.status == 200
    assert server.connections == 2


async def test_a_server_that_hangs_up_on_a_new_connection_is_not_retried(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        with pytest.raises(ConnectionFailed):
            await pool.request("POST", "/x", {}, b"{}")
    assert server.connections == 1


async def test_silence_longer_than_the_read_timeout_times_out(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url, read_timeout=0.2)
        received = []
        with pytest.raises(TimeoutError):
            async with pool.open("POST", "/x", {}, b"") as answer:
                async for chunk in answer.chunks():
                    received.append(chunk)
    assert received == [b"first"]


async def test_unreachable_upstream_fails_to_connect(pools: list[Http1Pool]) -> None:
    async with RawServer(lambda reader, writer: asyncio.sleep(0)) as server:
        url = server.url
    pool = pool_for(pools, url)
    with pytest.raises(ConnectionFailed, match="connect"):
        await pool.request("POST", "/x", {}, b"")


async def test_callers_beyond_the_connection_limit_wait_their_turn(pools: list[Http1Pool]) -> None:
    busy = 0
    most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy, most
        while True:
            await server.read_request(reader)
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.02)
            busy -= 1
            writer.write(json_answer(b"{}"))

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url, max_connections=2)
        answers = await asyncio.gather(*(pool.request("POST", "/x", {}, b"") for _ in range(8)))

    assert all(answer.status == 200 for answer in answers)
    assert most == 2 and server.connections == 2


async def test_a_stream_left_unread_closes_its_connection(pools: list[Http1Pool]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()

    async with RawServer(handler) as server:
        pool = pool_for(pools, server.url)
        for _ in range(2):
            async with pool.open("POST", "/x", {}, b"") as answer:
                async for _chunk in answer.chunks():
                    break

    assert server.connections == 2
