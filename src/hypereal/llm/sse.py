"""Server-sent events: encoding our own and parsing an upstream's, incrementally.

The parser takes bytes as they arrive (chunk boundaries anywhere, even inside a line or
a CRLF pair) and yields complete events. It follows the WHATWG rules that matter for
LLM streams: `event:` and `data:` fields, several `data:` lines joined by newlines, one
optional space after the colon, comment lines starting with `:` ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: bytes
    raw: bytes = b""
    """The event's bytes as received, for forwarding unchanged."""

    def json(self) -> Any:
        return orjson.loads(self.data)


def encode(data: Any, event: str | None = None) -> bytes:
    """One event with a JSON payload."""
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def encode_done() -> bytes:
    return b"data: [DONE]\n\n"


class Parser:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[Event]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # Normalise CRLF and lone CR, but keep a trailing CR: its LF may be in the next chunk.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            body = buffer[:-1] if tail else buffer
            buffer = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            event = _parse_block(block)
            if event is not None:
                yield event
        self._buffer = buffer[start:]

    def close(self) -> Iterator[Event]:
        """Whatever a stream that ended without a final blank line still held."""
        block, self._buffer = self._buffer.replace(b"\r", b"").strip(b"\n"), b""
        if block:
            event = _parse_block(block)
            if event is not None:
                yield event


def _parse_block(block: bytes) -> Event | None:
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data), block + b"\n\n")
