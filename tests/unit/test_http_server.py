"""The server's protocol: corked writes (one write per response or turn of the loop, nothing lost
or reordered) and the limits on a request's head (431, the connection closed, the app never called)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import uvicorn
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from hypereal.http_server import CorkedTransport, HttpProtocol
from tests.conftest import serving


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True


async def test_writes_of_one_turn_leave_in_one_write_in_order() -> None:
    real = RecordingTransport()
    corked = CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]

    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.write(bytearray(b"hello "))
    corked.write(memoryview(b"world"))
    assert real.writes == []
    assert corked.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nhello world")
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nhello world"]

    corked.write(b"next turn")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next turn"]


async def test_close_sends_what_is_pending_first_and_later_writes_are_dropped() -> None:
    real = RecordingTransport()
    corked = CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]

    corked.write(b"last words")
    corked.close()
    assert real.writes == [b"last words"] and real.closed
    corked.write(b"too late")
    await asyncio.sleep(0)
    assert real.writes == [b"last words"]


async def test_everything_else_is_the_real_transports() -> None:
    real = RecordingTransport()
    corked = CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.pause_reading()
    assert real.paused


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":

        async def pieces() -> object:
            for n in range(3):
                yield f"piece {n}\n"
                await asyncio.sleep(0.01)

        response: PlainTextResponse | StreamingResponse = StreamingResponse(pieces(), media_type="text/plain")
    else:
        response = PlainTextResponse("plain answer")
    await response(scope, receive, send)


async def test_a_server_on_the_protocol_answers_plain_and_streamed_calls_on_one_connection() -> None:
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(3):
            plain = await client.get("/")
            assert plain.status_code == 200 and plain.text == "plain answer"
            assert plain.headers["content-length"] == str(len("plain answer"))
            streamed = await client.get("/stream")
            assert streamed.text == "piece 0\npiece 1\npiece 2\n"


class SocketlessTransport(RecordingTransport):
    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def resume_reading(self) -> None:
        return None


async def test_a_complete_response_leaves_at_once_in_one_write() -> None:
    real = SocketlessTransport()
    seen_when_done: list[list[bytes]] = []

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
        # Still this turn of the loop: the finished response is already on its way.
        seen_when_done.append(list(real.writes))

    config = uvicorn.Config(answer, log_level="error")
    protocol = HttpProtocol(config, ServerState(), {})
    protocol.connection_made(real)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.connection_lost(None)

    assert len(seen_when_done) == 1 and len(seen_when_done[0]) == 1
    (sent,) = seen_when_done[0]
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n") and sent.endswith(b"\r\n\r\nhello")


# ---------------------------------------------------------------- limits on the request head

LIMITED = HttpProtocol.with_limits(max_head_bytes=8 * 1024, max_headers=20)


class Counting:
    """An app that answers with the size of the body it read, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await PlainTextResponse(str(size))(scope, receive, send)


def head(*lines: str, last: bool = False) -> bytes:
    """A GET's head with `lines` as further fields; `last` asks the server to close after it."""
    lines = (*lines, "Connection: close") if last else lines
    return ("GET / HTTP/1.1\r\nHost: test\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


async def exchange(port: int, *pieces: bytes) -> tuple[bytes, int]:
    """Send `pieces` on one connection (as long as the server reads them); (everything read back
    until the server closed or went quiet, bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
    except ConnectionError:
        pass  # refused and closed while we were still sending
    answer = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while chunk := await asyncio.wait_for(reader.read(65536), 2):
            answer += chunk
    writer.close()
    return answer, sent


async def test_heads_within_the_limits_are_served_and_a_body_in_the_same_read_is_not_counted() -> None:
    counting = Counting()
    async with serving(counting, LIMITED) as port:
        fields = [f"X-Field-{n}: {'v' * 300}" for n in range(18)]
        assert len(head(*fields, last=True)) < 8 * 1024
        answer, _ = await exchange(port, head(*fields) + head(*fields, last=True))  # two requests, one connection
        assert answer.count(b"HTTP/1.1 200 OK") == 2

        body = b"x" * 300_000
        post = f"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        post = post.encode() + body
        answer, _ = await exchange(port, post)  # head and a large body in one write
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"300000")
    assert counting.calls == 3


async def test_a_head_larger_than_the_limit_is_431_and_the_connection_closes() -> None:
    counting = Counting()
    async with serving(counting, LIMITED) as port:
        for request in (head(f"X-Big: {'v' * 10_000}"), head(*(f"X-Field-{n}: {'v' * 1000}" for n in range(9)))):
            answer, _ = await exchange(port, request, head())
            assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert b"connection: close" in answer.lower()
            assert answer.endswith(b'{"error":"Request header fields larger than 8192 bytes"}')
            assert answer.count(b"HTTP/1.1") == 1  # the request after it on the connection was never read
    assert counting.calls == 0


async def test_a_header_of_megabytes_is_refused_before_it_is_read() -> None:
    counting = Counting()
    async with serving(counting, LIMITED) as port:
        pieces = [b"GET / HTTP/1.1\r\nHost: test\r\nX-Huge: ", *([b"v" * 65536] * 640)]  # 40 MiB
        answer, sent = await exchange(port, *pieces)
        # The server read a little past the limit, discarded a little more, and closed; the
        # client may see the 431 or only the reset, depending on what it was doing then.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        assert sent < 20 * 1024 * 1024
        assert counting.calls == 0
        # The server is fine afterwards.
        after, _ = await exchange(port, head(last=True))
        assert after.startswith(b"HTTP/1.1 200 OK")


async def test_more_header_fields_than_the_limit_is_431_and_the_connection_closes() -> None:
    counting = Counting()
    async with serving(counting, LIMITED) as port:
        fits, _ = await exchange(port, head(*(f"X-{n}: v" for n in range(18)), last=True))  # 20 fields
        assert fits.startswith(b"HTTP/1.1 200 OK")
        answer, _ = await exchange(port, head(*(f"X-{n}: v" for n in range(20))), head())
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in answer.lower()
    assert answer.endswith(b'{"error":"More than 20 request header fields","limit":20}')
    assert answer.count(b"HTTP/1.1") == 1
    assert counting.calls == 1


async def test_the_default_limits_refuse_what_the_field_refuses() -> None:
    """64 KiB and 100 fields, as nginx and gunicorn roughly allow: 1 MB and 5,000 fields are refused."""
    counting = Counting()
    async with serving(counting) as port:
        one_mb, _ = await exchange(port, head(f"X-Big: {'v' * 1_000_000}"))
        many, _ = await exchange(port, head(*(f"X-{n}: v" for n in range(5000))))
        usual, _ = await exchange(port, head(*(f"X-{n}: {'v' * 500}" for n in range(90)), last=True))
    assert one_mb.startswith(b"HTTP/1.1 431 ") and many.startswith(b"HTTP/1.1 431 ")
    assert usual.startswith(b"HTTP/1.1 200 OK")
