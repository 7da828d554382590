"""Anthropic Messages streams ⇄ canonical events.

The encoder never opens a text block before it has text: a block that would stay empty
is skipped and the blocks after it are renumbered, because clients (Claude Code among
them) store empty text blocks and send them back, and Anthropic then refuses the request.
A text block's citations wait for it to open. A web search another upstream ran is told as
Anthropic tells its own: a `server_tool_use` block whose input streams as JSON, then the
`web_search_tool_result` block whole.

The decoder turns a web search's `server_tool_use` block and its `web_search_tool_result`
into one `WebSearchPart`, given when the results arrive, and unwraps the calls of custom
tools offered as functions as their JSON streams in.

A signature another vendor made goes to the client tagged, the tag before its first piece
(`continuity`).
"""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.errors import UpstreamError
from hypereal.llm import continuity, hosted_tools
from hypereal.llm.anthropic import decode_stop_reason, decode_usage, encode_usage
from hypereal.llm.custom_tools import StreamUnwrapper
from hypereal.llm.types import (
    BlockStart,
    BlockStop,
    Citation,
    CitationDelta,
    RedactedThinkingPart,
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
    WebSearchPart,
    new_id,
)

PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _start(index: int, block: dict[str, Any]) -> bytes:
    return _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


class StreamEncoder:
    """Canonical events → Messages SSE bytes for a client."""

    def __init__(self, model: str, *, input_tokens: int = 0) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.id = new_id("msg_")
        self.out_index: dict[int, int] = {}
        self.pending_text: set[int] = set()
        self.custom_calls: dict[int, bool] = {}
        """Open custom calls, sent as `{"input": "..."}` JSON: whether that JSON was begun."""
        self.pending_citations: dict[int, list[Citation]] = {}
        """Citations of text blocks not opened yet."""
        self.next_out = 0
        self.unsigned: set[int] = set()
        """Open thinking blocks without a signature yet (a tag goes before the first piece only)."""

    def _open(self, index: int, block: dict[str, Any]) -> bytes:
        out = self.out_index[index] = self.next_out
        self.next_out += 1
        return _start(out, block)

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        out = self.out_index.get(index)
        if out is None:
            return b""
        return _event("content_block_delta", {"type": "content_block_delta", "index": out, "delta": delta})

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            opened = b""
            if event.index in self.pending_text:
                self.pending_text.discard(event.index)
                opened = self._open(event.index, {"type": "text", "text": ""})
                for citation in self.pending_citations.pop(event.index, ()):
                    opened += self._citation(event.index, citation)
            return opened + self._delta(event.index, {"type": "text_delta", "text": event.text})
        if isinstance(event, CitationDelta):
            if event.index in self.pending_text:
                self.pending_citations.setdefault(event.index, []).append(event.citation)
                return b""
            return self._citation(event.index, event.citation)
        if isinstance(event, ToolInputDelta):
            if not event.partial_json:
                return b""
            piece = event.partial_json
            if event.index in self.custom_calls:
                piece = ("" if self.custom_calls[event.index] else '{"input":"') + orjson.dumps(piece).decode()[1:-1]
                self.custom_calls[event.index] = True
            return self._delta(event.index, {"type": "input_json_delta", "partial_json": piece})
        if isinstance(event, ThinkingDelta):
            return self._delta(event.index, {"type": "thinking_delta", "thinking": event.text}) if event.text else b""
        if isinstance(event, SignatureDelta):
            signature = event.signature
            if event.index in self.unsigned:
                self.unsigned.discard(event.index)
                signature = continuity.for_client(signature, event.origin, "anthropic")
            return self._delta(event.index, {"type": "signature_delta", "signature": signature})
        if isinstance(event, BlockStart):
            part = event.part
            if isinstance(part, TextPart):
                self.pending_text.add(event.index)
                return self.encode(TextDelta(event.index, part.text)) if part.text else b""
            if isinstance(part, ThinkingPart):
                self.unsigned.add(event.index)
                return self._open(event.index, {"type": "thinking", "thinking": "", "signature": ""})
            if isinstance(part, ToolUsePart):
                if part.custom:
                    self.custom_calls[event.index] = False
                return self._open(event.index, {"type": "tool_use", "id": part.id, "name": part.name, "input": {}})
            if isinstance(part, WebSearchPart):
                return self._web_search(part)
            assert isinstance(part, RedactedThinkingPart)
            return self._open(event.index, {"type": "redacted_thinking", "data": part.data})
        if isinstance(event, BlockStop):
            self.pending_text.discard(event.index)
            self.pending_citations.pop(event.index, None)
            out = self.out_index.get(event.index)
            if out is None:
                return b""
            closing = b""
            if event.index in self.unsigned:
                # Anthropic's SDKs expect a signature on every thinking block.
                self.unsigned.discard(event.index)
                closing = self._delta(event.index, {"type": "signature_delta", "signature": continuity.UNSIGNED})
            if event.index in self.custom_calls:
                ending = '"}' if self.custom_calls.pop(event.index) else '{"input":""}'
                closing = self._delta(event.index, {"type": "input_json_delta", "partial_json": ending})
            return closing + _stop(out)
        if isinstance(event, StreamStart):
            usage = event.usage if event.usage.input_tokens else Usage(input_tokens=self.input_tokens)
            message: dict[str, Any] = {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**encode_usage(usage), "output_tokens": 0},
            }
            return _event("message_start", {"type": "message_start", "message": message}) + PING
        if isinstance(event, StreamEnd):
            return self.finish(event.stop_reason, event.usage, event.stop_sequence)
        return b""

    def _citation(self, index: int, citation: Citation) -> bytes:
        block = hosted_tools.anthropic_citation_block(citation)
        return self._delta(index, {"type": "citations_delta", "citation": block})

    def _web_search(self, search: WebSearchPart) -> bytes:
        """A finished search as its two blocks, each opened and closed at once."""
        call, result = hosted_tools.anthropic_search_blocks(search)
        first, second = self.next_out, self.next_out + 1
        self.next_out += 2
        query = {"type": "input_json_delta", "partial_json": orjson.dumps(call["input"]).decode()}
        return (
            _start(first, {**call, "input": {}})
            + _event("content_block_delta", {"type": "content_block_delta", "index": first, "delta": query})
            + _stop(first)
            + _start(second, result)
            + _stop(second)
        )

    def finish(self, stop_reason: StopReason | None, usage: Usage | None, stop_sequence: str | None = None) -> bytes:
        usage = usage or Usage(input_tokens=self.input_tokens)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason or "end_turn", "stop_sequence": stop_sequence},
            "usage": encode_usage(usage),
        }
        return _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})

    def error(self, body: dict[str, Any]) -> bytes:
        return _event("error", body)


class StreamDecoder:
    """Messages SSE events from an upstream → canonical events; `custom_names` are the custom tools offered."""

    def __init__(self, custom_names: frozenset[str] = frozenset()) -> None:
        self.unwrapper = StreamUnwrapper(custom_names)
        self.searches: dict[str, tuple[int, str]] = {}
        """Web searches by id, waiting for their results: (block index, input JSON so far)."""
        self.search_ids: dict[int, str] = {}
        self.started = False
        self.ended = False
        self.stop_reason: StopReason | None = None
        self.stop_sequence: str | None = None
        self.usage = Usage()
        self.saw_usage = False
        self.kinds: dict[int, str] = {}

    def feed(self, name: str | None, data: bytes) -> list[StreamEvent]:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream sent a stream event that is not JSON") from exc
        kind = payload.get("type") if isinstance(payload, dict) else None
        kind = kind or name
        if kind == "content_block_delta":
            index = int(payload.get("index", 0))
            delta = payload.get("delta") or {}
            delta_kind = delta.get("type")
            if delta_kind == "text_delta":
                return [TextDelta(index, str(delta.get("text") or ""))]
            if delta_kind == "input_json_delta":
                piece = str(delta.get("partial_json") or "")
                search_id = self.search_ids.get(index)
                if search_id is not None:
                    position, so_far = self.searches[search_id]
                    self.searches[search_id] = (position, so_far + piece)
                    return []
                return list(self.unwrapper.delta(index, piece))
            if delta_kind == "citations_delta":
                citation = hosted_tools.anthropic_citation(delta.get("citation"))
                return [CitationDelta(index, citation)] if citation is not None else []
            if delta_kind == "thinking_delta":
                return [ThinkingDelta(index, str(delta.get("thinking") or ""))]
            if delta_kind == "signature_delta":
                return [SignatureDelta(index, str(delta.get("signature") or ""), "anthropic")]
            return []
        if kind == "content_block_start":
            return self._block_start(int(payload.get("index", 0)), payload.get("content_block") or {})
        if kind == "content_block_stop":
            index = int(payload.get("index", 0))
            self.search_ids.pop(index, None)
            return [*self.unwrapper.stop(index), BlockStop(index)] if self.kinds.pop(index, None) else []
        if kind == "message_start":
            message = payload.get("message") or {}
            self.started = True
            self.usage = decode_usage(message.get("usage"))
            start_usage = Usage(
                input_tokens=self.usage.input_tokens,
                cached_input_tokens=self.usage.cached_input_tokens,
                cache_creation_input_tokens=self.usage.cache_creation_input_tokens,
            )
            return [StreamStart(str(message.get("id") or new_id("msg_")), str(message.get("model") or ""), start_usage)]
        if kind == "message_delta":
            delta = payload.get("delta") or {}
            self.stop_reason = decode_stop_reason(delta.get("stop_reason")) or self.stop_reason
            if isinstance(delta.get("stop_sequence"), str):
                self.stop_sequence = delta["stop_sequence"]
            self._merge_usage(payload.get("usage"))
            return []
        if kind == "message_stop":
            return self.finish(stopped=True)
        if kind == "error":
            error = payload.get("error") or {}
            raise UpstreamError(f"Upstream error in stream: {error.get('message') or error.get('type') or 'unknown'}")
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        if kind == "text":
            self.kinds[index] = "text"
            events: list[StreamEvent] = [BlockStart(index, TextPart(""))]
            if block.get("text"):
                events.append(TextDelta(index, str(block["text"])))
            return events
        if kind == "thinking":
            self.kinds[index] = "thinking"
            return [BlockStart(index, ThinkingPart(""))]
        if kind == "redacted_thinking":
            self.kinds[index] = "redacted_thinking"
            return [BlockStart(index, RedactedThinkingPart(str(block.get("data") or "")))]
        if kind == "tool_use":
            self.kinds[index] = "tool_use"
            tool_id, name = str(block.get("id") or new_id("toolu_")), str(block.get("name") or "")
            events = [BlockStart(index, self.unwrapper.start(index, ToolUsePart(tool_id, name, "")))]
            if block.get("input"):
                events.extend(self.unwrapper.delta(index, orjson.dumps(block["input"]).decode()))
            return events
        if kind == "server_tool_use" and block.get("name") == hosted_tools.WEB_SEARCH_NAME:
            search_id = str(block.get("id") or "")
            self.search_ids[index] = search_id
            given = block.get("input")
            self.searches[search_id] = (index, orjson.dumps(given).decode() if given else "")
            return []
        if kind == "web_search_tool_result":
            waiting = self.searches.pop(str(block.get("tool_use_id") or ""), None)
            if waiting is None:
                return []
            position, arguments = waiting
            search = hosted_tools.web_search_call(str(block.get("tool_use_id")), arguments)
            hosted_tools.add_results(search, block)
            return [BlockStart(position, search), BlockStop(position)]
        return []  # other server tool blocks: only Anthropic can interpret them

    def _merge_usage(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        self.saw_usage = True
        if raw.get("output_tokens") is not None:
            self.usage.output_tokens = int(raw["output_tokens"])
        if any(raw.get(key) is not None for key in ("input_tokens", "cache_read_input_tokens")):
            updated = decode_usage({**encode_usage(self.usage), **{k: v for k, v in raw.items() if v is not None}})
            self.usage.input_tokens = updated.input_tokens
            self.usage.cached_input_tokens = updated.cached_input_tokens
            self.usage.cache_creation_input_tokens = updated.cache_creation_input_tokens

    def finish(self, *, stopped: bool = False) -> list[StreamEvent]:
        if self.ended:
            return []
        if not stopped and self.stop_reason is None:
            raise UpstreamError("Upstream stream ended before it finished")
        self.ended = True
        events: list[StreamEvent] = []
        for search_id, (position, arguments) in self.searches.items():  # paused before the results came
            events += [BlockStart(position, hosted_tools.web_search_call(search_id, arguments)), BlockStop(position)]
        for index in sorted(self.kinds):
            events += [*self.unwrapper.stop(index), BlockStop(index)]
        self.kinds.clear()
        usage = self.usage if self.saw_usage else None
        events.append(StreamEnd(self.stop_reason or "end_turn", usage, self.stop_sequence))
        return events
