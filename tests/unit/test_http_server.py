"""The server's corked transport: one write per response or turn of the loop, nothing lost or reordered."""

from __future__ import annotations

import asyncio
import socket

import httpx
import uvicorn
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from hypereal.http_server import CorkedTransport, HttpProtocol


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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=HttpProtocol, log_level="error"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                plain = await client.get("/")
                assert plain.status_code == 200 and plain.text == "plain answer"
                assert plain.headers["content-length"] == str(len("plain answer"))
                streamed = await client.get("/stream")
                assert streamed.text == "piece 0\npiece 1\npiece 2\n"
    finally:
        server.should_exit = True
        await serving


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
