"""OpenAI Chat Completions streams ⇄ canonical events.

Traps handled: tool-call arguments arrive split across chunks (and each call is told apart
only by its `index`), usage comes in a last chunk with no choices after the finish reason,
and OpenAI-compatible servers may close the stream without `[DONE]` once they finished.
A stream that closes before any finish reason was cut, and says so.

Custom tool calls stream as `{"type": "custom", "custom": {"name", "input"}}` pieces of a
tool call, the shape OpenAI sends though its published chunk schema lists only functions.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError
from hypereal.llm.custom_tools import StreamUnwrapper
from hypereal.llm.openai_chat import FINISH_REASONS, STOP_REASONS, decode_usage, encode_usage
from hypereal.llm.types import (
    BlockStart,
    BlockStop,
    SignatureDelta,
    StopReason,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolInputDelta,
    ToolUsePart,
    Usage,
    new_id,
)


class StreamEncoder:
    """Canonical events → `chat.completion.chunk` SSE bytes for a client."""

    def __init__(self, model: str, *, include_usage: bool = False, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = created or int(time.time())
        self.id = new_id("chatcmpl-")
        self.tool_index: dict[int, int] = {}
        self.custom_blocks: set[int] = set()
        self._prefix = b""
        usage_field = b',"usage":null' if include_usage else b""
        self._suffix = b',"logprobs":null,"finish_reason":null}]' + usage_field + b"}\n\n"
        self._set_prefix()

    def _set_prefix(self) -> None:
        head = orjson.dumps(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._prefix + orjson.dumps(delta) + self._suffix

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            return self._delta({"content": event.text}) if event.text else b""
        if isinstance(event, ToolInputDelta):
            if not event.partial_json:
                return b""
            slot = self.tool_index.get(event.index, 0)
            if event.index in self.custom_blocks:
                return self._delta({"tool_calls": [{"index": slot, "custom": {"input": event.partial_json}}]})
            return self._delta({"tool_calls": [{"index": slot, "function": {"arguments": event.partial_json}}]})
        if isinstance(event, ThinkingDelta):
            return self._delta({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, BlockStart):
            part = event.part
            if isinstance(part, ToolUsePart):
                slot = self.tool_index[event.index] = len(self.tool_index)
                if part.custom:
                    self.custom_blocks.add(event.index)
                    custom = {
                        "index": slot,
                        "id": part.id,
                        "type": "custom",
                        "custom": {"name": part.name, "input": ""},
                    }
                    return self._delta({"tool_calls": [custom]})
                function = {"name": part.name, "arguments": ""}
                call = {"index": slot, "id": part.id, "type": "function", "function": function}
                return self._delta({"tool_calls": [call]})
            return b""
        if isinstance(event, StreamStart):
            return self._delta({"role": "assistant", "content": ""})
        if isinstance(event, StreamEnd):
            return self.finish(event.stop_reason, event.usage)
        if isinstance(event, BlockStop | SignatureDelta):
            return b""
        return b""

    def finish(self, stop_reason: StopReason | None, usage: Usage | None) -> bytes:
        finish = FINISH_REASONS.get(stop_reason or "end_turn", "stop")
        head = self._prefix + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]"
        out = head + (b',"usage":null' if self.include_usage else b"") + b"}\n\n"
        if self.include_usage:
            chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": encode_usage(usage or Usage()),
            }
            out += b"data: " + orjson.dumps(chunk) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, body: dict[str, Any]) -> bytes:
        """An error after the stream began: OpenAI sends it as a data line with an `error` object."""
        return b"data: " + orjson.dumps(body) + b"\n\n"


class StreamDecoder:
    """`chat.completion.chunk` payloads from an upstream → canonical events.

    `custom_names` are the custom tools offered as functions, whose calls are unwrapped.
    """

    def __init__(self, custom_names: frozenset[str] = frozenset()) -> None:
        self.unwrapper = StreamUnwrapper(custom_names)
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open_index: int | None = None
        self.open_kind = ""
        self.tools: dict[int, int] = {}
        self.stop_reason: StopReason | None = None
        self.usage: Usage | None = None
        self.saw_finish = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        if data.strip() == b"[DONE]":
            return self.finish(done=True)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream sent a stream chunk that is not JSON") from exc
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None and not chunk.get("choices"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"Upstream error in stream: {message}")
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(StreamStart(str(chunk.get("id") or new_id("chatcmpl-")), str(chunk.get("model") or "")))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.extend(self._ensure("thinking"))
                out.append(ThinkingDelta(self.next_index - 1, reasoning))
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    out.extend(self._ensure("text"))
                    out.append(TextDelta(self.next_index - 1, text))
            for position, call in enumerate(delta.get("tool_calls") or ()):
                out.extend(self._tool_call(call.get("index", position), call))
            finish = choice.get("finish_reason")
            if finish:
                self.saw_finish = True
                self.stop_reason = STOP_REASONS.get(finish, "end_turn")
                out.extend(self._close())
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = decode_usage(usage)
        return out

    def _tool_call(self, slot: int, call: dict[str, Any]) -> list[StreamEvent]:
        custom = call.get("custom")
        is_custom = call.get("type") == "custom" or (isinstance(custom, dict) and bool(custom))
        named = (custom if is_custom else call.get("function")) or {}
        out: list[StreamEvent] = []
        if slot not in self.tools:
            out.extend(self._close())
            index = self.tools[slot] = self.next_index
            self.next_index += 1
            self.open_index, self.open_kind = index, "tool"
            part = ToolUsePart(str(call.get("id") or new_id("call_")), str(named.get("name") or ""), "", is_custom)
            out.append(BlockStart(index, self.unwrapper.start(index, part)))
        piece = named.get("input" if is_custom else "arguments")
        if isinstance(piece, str) and piece:
            out.extend(
                [ToolInputDelta(self.tools[slot], piece)]
                if is_custom
                else self.unwrapper.delta(self.tools[slot], piece)
            )
        return out

    def _ensure(self, kind: str) -> list[StreamEvent]:
        if self.open_index is not None and self.open_kind == kind:
            return []
        out = self._close()
        index = self.next_index
        self.next_index += 1
        self.open_index, self.open_kind = index, kind
        out.append(BlockStart(index, TextPart("") if kind == "text" else ThinkingPart("")))
        return out

    def _close(self) -> list[StreamEvent]:
        if self.open_index is None:
            return []
        index, self.open_index, self.open_kind = self.open_index, None, ""
        return [*self.unwrapper.stop(index), BlockStop(index)]

    def finish(self, *, done: bool = False) -> list[StreamEvent]:
        """The end of the upstream's stream: at `[DONE]`, or when the connection closed."""
        if self.ended:
            return []
        if not done and not self.saw_finish:
            raise UpstreamError("Upstream stream ended before it finished")
        self.ended = True
        out: list[StreamEvent] = []
        if not self.started:
            out.append(StreamStart(new_id("chatcmpl-"), ""))
        out.extend(self._close())
        out.append(StreamEnd(self.stop_reason or "end_turn", self.usage))
        return out
