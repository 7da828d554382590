"""Responses kept for `previous_response_id`: the conversation each response ended.

Kept in the database (`stored_responses`), so a response created through one API process
is continued through any other, and survives restarts; no sticky sessions are needed. A
row belongs to the account that created it: another account's id answers 404. Rows live
for `TTL_SECONDS`; older ones are treated as missing, and each process deletes them when it
writes, at most once per `PRUNE_INTERVAL_SECONDS`.

The conversation is stored in a JSON form of the canonical types written here, part by
part, rather than in one of the wire formats: none of those carries every part faithfully
(thinking signatures and the vendor of each, redacted thinking, images inside tool
results, tool-call arguments kept verbatim even when they are not valid JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from hypereal.errors import NotFound
from hypereal.llm.continuity import VENDORS
from hypereal.llm.types import (
    ImagePart,
    Message,
    Part,
    RedactedThinkingPart,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
    WebSearchPart,
)
from hypereal.store import responses as sql
from hypereal.store.db import Database

log = logging.getLogger(__name__)
TTL_SECONDS = 30 * 24 * 3600.0
PRUNE_INTERVAL_SECONDS = 3600.0
FORMAT_VERSION = 1


class ResponseStore:
    def __init__(
        self,
        db: Database,
        *,
        ttl_seconds: float = TTL_SECONDS,
        prune_interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self.prune_interval_seconds = prune_interval_seconds
        self.clock = clock
        self._queue: list[tuple[sql.StoredResponse, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        self._pruning: asyncio.Task[int] | None = None

    async def put(self, response_id: str, account_id: str, messages: list[Message]) -> None:
        """Store the conversation `response_id` ended; committed when this returns.

        The writes of concurrent calls share a transaction (one commit for many answers), a
        transaction of their own, apart from the ledger's. A failed write is logged, not
        raised: the answer it belongs to is already paid for, and losing the continuation is
        the smaller harm. A caller that goes away does not take its write with it.
        """
        now = self.clock()
        row = sql.StoredResponse(response_id, account_id, encode_conversation(messages), now)
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._queue.append((row, written))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="store-responses")
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval_seconds
            if self._pruning is None or self._pruning.done():
                self._pruning = loop.create_task(self._prune_quietly(), name="prune-responses")
        await asyncio.shield(written)

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.db.write() as conn:
                    await sql.insert_many(conn, [row for row, _ in batch])
            except Exception:
                log.exception("storing %d responses together failed; storing them one by one", len(batch))
                for row, written in batch:
                    try:
                        async with self.db.write() as conn:
                            await sql.insert_many(conn, [row])
                    except Exception:
                        log.exception("storing response %s failed", row.id)
                    written.set_result(None)
                continue
            for _, written in batch:
                written.set_result(None)

    async def find(self, response_id: str, account_id: str) -> list[Message] | None:
        """The conversation `response_id` ended; None when there is no such live response.

        Raises NotFound when the response belongs to another account, whatever the upstream.
        """
        async with self.db.read() as conn:
            row = await sql.find(conn, response_id, self.clock() - self.ttl_seconds)
        if row is None:
            return None
        if row.account_id != account_id:
            raise NotFound(f"Previous response '{response_id}' not found", field="previous_response_id")
        try:
            return decode_conversation(row.body)
        except ValueError:
            log.exception("stored response %s cannot be read", response_id)
            return None

    async def prune(self) -> int:
        """Delete the expired responses; how many went."""
        async with self.db.write() as conn:
            return await sql.delete_before(conn, self.clock() - self.ttl_seconds)

    async def _prune_quietly(self) -> int:
        try:
            return await self.prune()
        except Exception:
            log.exception("pruning stored responses failed")
            return 0

    async def close(self) -> None:
        for task in (self._writer, self._pruning):
            if task is not None and not task.done():
                await task


# ---------------------------------------------------------------- the stored form


def encode_conversation(messages: list[Message]) -> str:
    document = {"v": FORMAT_VERSION, "messages": [_encode_message(message) for message in messages]}
    return orjson.dumps(document).decode()


def decode_conversation(text: str) -> list[Message]:
    """The messages of a stored conversation; ValueError when it is not one this code wrote."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError("stored conversation is not JSON") from exc
    if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
        raise ValueError("stored conversation has an unknown format")
    return [_decode_message(item) for item in _list(document, "messages")]


def _encode_message(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": [_encode_part(part) for part in message.content]}


def _decode_message(item: Any) -> Message:
    if not isinstance(item, dict):
        raise ValueError("stored message is not an object")
    role = item.get("role")
    if role in ("user", "assistant", "system"):
        return Message(role, [_decode_part(part) for part in _list(item, "content")])
    raise ValueError(f"stored message has an unknown role {role!r}")


def _encode_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", "url": part.url, "detail": part.detail}
    if isinstance(part, ToolUsePart):
        stored = {"type": "tool_use", "id": part.id, "name": part.name, "arguments": part.arguments}
        return {**stored, "custom": True} if part.custom else stored
    if isinstance(part, ToolResultPart):
        return {
            "type": "tool_result",
            "tool_use_id": part.tool_use_id,
            "content": [_encode_part(inner) for inner in part.content],
            "is_error": part.is_error,
        }
    if isinstance(part, ThinkingPart):
        return {"type": "thinking", "text": part.text, "signature": part.signature, "origin": part.origin}
    if isinstance(part, WebSearchPart):
        return {"type": "web_search", "id": part.id, "query": part.query, "failed": part.failed}
    return {"type": "redacted_thinking", "data": part.data}


def _decode_part(item: Any) -> Part:
    if not isinstance(item, dict):
        raise ValueError("stored part is not an object")
    kind = item.get("type")
    if kind == "text":
        return TextPart(_str(item, "text"))
    if kind == "image":
        return ImagePart(_str(item, "url"), _optional_str(item, "detail"))
    if kind == "tool_use":
        return ToolUsePart(_str(item, "id"), _str(item, "name"), _str(item, "arguments"), item.get("custom") is True)
    if kind == "tool_result":
        content: list[TextPart | ImagePart] = []
        for inner in _list(item, "content"):
            decoded = _decode_part(inner)
            if not isinstance(decoded, TextPart | ImagePart):
                raise ValueError("a stored tool result holds a part other than text or image")
            content.append(decoded)
        return ToolResultPart(_str(item, "tool_use_id"), content, item.get("is_error") is True)
    if kind == "thinking":
        origin = item.get("origin")
        return ThinkingPart(_str(item, "text"), _optional_str(item, "signature"), origin if origin in VENDORS else None)
    if kind == "redacted_thinking":
        return RedactedThinkingPart(_str(item, "data"))
    if kind == "web_search":
        return WebSearchPart(_str(item, "id"), _str(item, "query"), failed=item.get("failed") is True)
    raise ValueError(f"stored part has an unknown type {kind!r}")


def _str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ValueError(f"stored field {key!r} is not a string")
    return value


def _optional_str(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"stored field {key!r} is not a string")
    return value


def _list(item: dict[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    if not isinstance(value, list):
        raise ValueError(f"stored field {key!r} is not a list")
    return value
