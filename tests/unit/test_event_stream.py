"""Streamed answers stop their producer when the client leaves, and only then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hypereal.api.event_stream import EventStream

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


class Producer:
    def __init__(self, events: int | None = None) -> None:
        self.events = events
        self.sent = 0
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while self.events is None or self.sent < self.events:
                self.sent += 1
                yield b"data: {}\n\n"
                await asyncio.sleep(0.005)
        finally:
            self.closed = True


async def test_a_client_that_leaves_stops_the_producer_and_the_answer_ends_quietly() -> None:
    producer = Producer()
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 4:
            left.set()

    await EventStream(producer.chunks())(SCOPE, receive, send)

    assert producer.closed and producer.sent < 10
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # the cancellation was ours and is spent


async def test_a_finished_stream_ends_the_answer_and_its_watcher() -> None:
    producer = Producer(events=3)
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await EventStream(producer.chunks())(SCOPE, receive, send)

    assert producer.sent == 3 and producer.closed
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    await asyncio.sleep(0)
    watchers = [task for task in asyncio.all_tasks() if task.get_coro().__name__ == "_cancel_when_gone"]  # type: ignore[union-attr]
    assert all(task.done() for task in watchers)


async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    producer = Producer()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    answering = asyncio.create_task(EventStream(producer.chunks())(SCOPE, receive, send))
    await asyncio.sleep(0.02)
    answering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answering
    assert producer.closed
