"""OpenAI Responses streams ⇄ canonical events.

The Responses stream is item-oriented: each output item (message, function or custom
tool call, reasoning) is added, filled by deltas and marked done, and every event carries
a `sequence_number`. The stream ends with `response.completed` (or `.failed`); there is no
`[DONE]`. The encoder defers a message item until it has text, like the Anthropic
encoder, so clients never store empty messages; a local shell call, which has no delta
events, is added once its action is whole; a web search arrives whole and is told in one go.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError
from hypereal.llm import namespace_tools
from hypereal.llm.openai_responses import (
    citation_of,
    decode_usage,
    response_object,
    stop_reason_of,
    web_search_of,
)
from hypereal.llm.openai_responses_items import (
    CALL_ITEMS,
    ITEM_PREFIXES,
    LOCAL_SHELL,
    ClientTools,
    call_kind,
    client_token,
    custom_tool_call_item,
    function_call_item,
    local_shell_call_item,
    message_item,
    reasoning_item,
    url_citation,
    web_search_call_item,
)
from hypereal.llm.types import (
    BlockStart,
    BlockStop,
    Citation,
    CitationDelta,
    OutputPart,
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

ARGUMENT_EVENTS = {
    "function_call": "response.function_call_arguments",
    "custom_tool_call": "response.custom_tool_call_input",
}


class _Item:
    __slots__ = ("id", "kind", "output_index", "part", "text")

    def __init__(self, item_id: str, kind: str, output_index: int, part: OutputPart) -> None:
        self.id = item_id
        self.kind = kind
        self.output_index = output_index
        self.part = part
        self.text = ""


class StreamEncoder:
    """Canonical events → Responses SSE bytes for a client."""

    def __init__(self, model: str, request: dict[str, Any], response_id: str | None = None) -> None:
        self.model = model
        self.request = request
        self.response_id = response_id or new_id("resp_")
        self.created_at = int(time.time())
        self.sequence = 0
        self.tools = ClientTools.of(request)
        self.items: dict[int, _Item] = {}
        self.pending_text: set[int] = set()
        self.citations: dict[int, list[Citation]] = {}
        self.done_items: list[tuple[int, dict[str, Any]]] = []
        self.next_output = 0

    def _emit(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(
        self, status: str, usage: Usage | None = None, stop: StopReason | None = None, error: Any = None
    ) -> dict[str, Any]:
        output = [item for _, item in sorted(self.done_items, key=lambda pair: pair[0])]
        return response_object(
            self.response_id,
            self.model,
            self.request,
            status=status,
            output=output,
            usage=usage,
            created_at=self.created_at,
            stop_reason=stop,
            error=error,
        )

    def _open(self, index: int, kind: str, part: OutputPart) -> _Item:
        item = self.items[index] = _Item(new_id(ITEM_PREFIXES[kind]), kind, self.next_output, part)
        self.next_output += 1
        return item

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            out = b""
            if event.index in self.pending_text:
                self.pending_text.discard(event.index)
                out = self._open_message(event.index)
            item = self.items.get(event.index)
            if item is None:
                return out
            item.text += event.text
            return out + self._emit(
                "response.output_text.delta",
                {
                    "item_id": item.id,
                    "output_index": item.output_index,
                    "content_index": 0,
                    "delta": event.text,
                    "logprobs": [],
                },
            )
        if isinstance(event, ToolInputDelta):
            item = self.items.get(event.index)
            if item is None or not event.partial_json:
                return b""
            item.text += event.partial_json
            if item.kind == "local_shell_call":
                return b""
            return self._emit(
                ARGUMENT_EVENTS[item.kind] + ".delta",
                {"item_id": item.id, "output_index": item.output_index, "delta": event.partial_json},
            )
        if isinstance(event, CitationDelta):
            self.citations.setdefault(event.index, []).append(event.citation)
            return b""
        if isinstance(event, ThinkingDelta):
            item = self.items.get(event.index)
            if item is None or not event.text:
                return b""
            item.text += event.text
            return self._emit(
                "response.reasoning_summary_text.delta",
                {"item_id": item.id, "output_index": item.output_index, "summary_index": 0, "delta": event.text},
            )
        if isinstance(event, SignatureDelta):
            item = self.items.get(event.index)
            if item is not None and isinstance(item.part, ThinkingPart):
                item.part.signature = (item.part.signature or "") + event.signature
                item.part.origin = event.origin
            return b""
        if isinstance(event, BlockStart):
            return self._block_start(event.index, event.part)
        if isinstance(event, BlockStop):
            self.pending_text.discard(event.index)
            return self._block_stop(event.index)
        if isinstance(event, StreamStart):
            response = self._response("in_progress")
            return self._emit("response.created", {"response": response}) + self._emit(
                "response.in_progress", {"response": response}
            )
        if isinstance(event, StreamEnd):
            return self.finish(event.stop_reason, event.usage)
        return b""

    def _open_message(self, index: int) -> bytes:
        item = self._open(index, "message", TextPart(""))
        added = self._emit(
            "response.output_item.added",
            {"output_index": item.output_index, "item": message_item(item.id, [], status="in_progress")},
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return added + self._emit(
            "response.content_part.added",
            {"item_id": item.id, "output_index": item.output_index, "content_index": 0, "part": part},
        )

    def _block_start(self, index: int, part: OutputPart) -> bytes:
        if isinstance(part, TextPart):
            self.pending_text.add(index)
            return self.encode(TextDelta(index, part.text)) if part.text else b""
        if isinstance(part, ToolUsePart):
            shell = ToolUsePart(part.id, part.name, "", part.custom)
            item = self._open(index, call_kind(shell, self.tools), shell)
            if item.kind == "local_shell_call":
                return b""  # added once its action is whole
            shell_item = CALL_ITEMS[item.kind](item.id, shell, "in_progress", self.tools)
            return self._emit("response.output_item.added", {"output_index": item.output_index, "item": shell_item})
        if isinstance(part, WebSearchPart):
            return self._web_search(part)
        item = self._open(index, "reasoning", part if isinstance(part, RedactedThinkingPart) else ThinkingPart(""))
        added = self._emit(
            "response.output_item.added",
            {"output_index": item.output_index, "item": reasoning_item(item.id, "", None)},
        )
        return added + self._emit(
            "response.reasoning_summary_part.added",
            {
                "item_id": item.id,
                "output_index": item.output_index,
                "summary_index": 0,
                "part": {"type": "summary_text", "text": ""},
            },
        )

    def _web_search(self, part: WebSearchPart) -> bytes:
        """A search the upstream already ran: its item added, searched and done at once."""
        item_id, output_index = new_id(ITEM_PREFIXES["web_search_call"]), self.next_output
        self.next_output += 1
        where = {"item_id": item_id, "output_index": output_index}
        added = web_search_call_item(item_id, part, status="in_progress")
        out = self._emit("response.output_item.added", {"output_index": output_index, "item": added})
        for stage in ("in_progress", "searching", "completed"):
            out += self._emit(f"response.web_search_call.{stage}", where)
        full = web_search_call_item(item_id, part)
        self.done_items.append((output_index, full))
        return out + self._emit("response.output_item.done", {"output_index": output_index, "item": full})

    def _block_stop(self, index: int) -> bytes:
        item = self.items.pop(index, None)
        citations = self.citations.pop(index, [])
        if item is None:
            return b""
        where = {"item_id": item.id, "output_index": item.output_index}
        out = b""
        if item.kind == "message":
            annotations = [url_citation(citation, 0, len(item.text)) for citation in citations]
            for number, annotation in enumerate(annotations):
                added = {**where, "content_index": 0, "annotation_index": number, "annotation": annotation}
                out += self._emit("response.output_text.annotation.added", added)
            part = {"type": "output_text", "text": item.text, "annotations": annotations, "logprobs": []}
            full = message_item(item.id, [part])
            out += self._emit(
                "response.output_text.done", {**where, "content_index": 0, "text": item.text, "logprobs": []}
            )
            out += self._emit("response.content_part.done", {**where, "content_index": 0, "part": part})
        elif item.kind == "function_call":
            assert isinstance(item.part, ToolUsePart)
            full = function_call_item(item.id, ToolUsePart(item.part.id, item.part.name, item.text), tools=self.tools)
            out = self._emit("response.function_call_arguments.done", {**where, "arguments": item.text})
        elif item.kind == "custom_tool_call":
            assert isinstance(item.part, ToolUsePart)
            call = ToolUsePart(item.part.id, item.part.name, item.text, custom=True)
            full = custom_tool_call_item(item.id, call, tools=self.tools)
            out = self._emit("response.custom_tool_call_input.done", {**where, "input": item.text})
        elif item.kind == "local_shell_call":
            assert isinstance(item.part, ToolUsePart)
            call = ToolUsePart(item.part.id, LOCAL_SHELL, item.text)
            added = local_shell_call_item(item.id, call, status="in_progress")
            out = self._emit("response.output_item.added", {"output_index": item.output_index, "item": added})
            full = local_shell_call_item(item.id, call)
        else:
            assert isinstance(item.part, ThinkingPart | RedactedThinkingPart)
            full = reasoning_item(item.id, item.text, client_token(item.part))
            summary = {"type": "summary_text", "text": item.text}
            out = self._emit("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": item.text})
            out += self._emit("response.reasoning_summary_part.done", {**where, "summary_index": 0, "part": summary})
        self.done_items.append((item.output_index, full))
        return out + self._emit("response.output_item.done", {"output_index": item.output_index, "item": full})

    def finish(self, stop_reason: StopReason | None, usage: Usage | None) -> bytes:
        out = b"".join(self._block_stop(index) for index in sorted(self.items))
        response = self._response("completed", usage or Usage(), stop_reason)
        self.final = response
        return out + self._emit("response.completed", {"response": response})

    def error(self, body: dict[str, Any]) -> bytes:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        failure = {"code": (error or {}).get("code") or "server_error", "message": (error or {}).get("message", "")}
        return self._emit("response.failed", {"response": self._response("failed", error=failure)})


class StreamDecoder:
    """Responses SSE events from an upstream → canonical events."""

    def __init__(self) -> None:
        self.started = False
        self.ended = False
        self.next_index = 0
        self.by_output: dict[int, int] = {}
        self.text_blocks: dict[tuple[int, int], int] = {}
        self.streamed_args: set[int] = set()
        self.open: set[int] = set()
        self.parts: list[OutputPart] = []

    def _new(self, part: OutputPart) -> tuple[int, list[StreamEvent]]:
        index = self.next_index
        self.next_index += 1
        self.open.add(index)
        self.parts.append(part)
        return index, [BlockStart(index, part)]

    def _stop(self, index: int | None) -> list[StreamEvent]:
        if index is None or index not in self.open:
            return []
        self.open.discard(index)
        return [BlockStop(index)]

    def feed(self, name: str | None, data: bytes) -> list[StreamEvent]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream sent a stream event that is not JSON") from exc
        kind = event.get("type") or name
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            key = (int(event.get("output_index", 0)), int(event.get("content_index", 0)))
            out: list[StreamEvent] = []
            if key not in self.text_blocks:
                self.text_blocks[key], out = self._new(TextPart(""))
            return [*out, TextDelta(self.text_blocks[key], str(event.get("delta") or ""))]
        if kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            index = self.by_output.get(int(event.get("output_index", 0)))
            if index is None:
                return []
            self.streamed_args.add(index)
            return [ToolInputDelta(index, str(event.get("delta") or ""))]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            index = self.by_output.get(int(event.get("output_index", 0)))
            return [ThinkingDelta(index, str(event.get("delta") or ""))] if index is not None else []
        if kind == "response.output_item.added":
            return self._item_added(int(event.get("output_index", 0)), event.get("item") or {})
        if kind == "response.output_text.annotation.added":
            key = (int(event.get("output_index", 0)), int(event.get("content_index", 0)))
            citation = citation_of(event.get("annotation"))
            text_index = self.text_blocks.get(key)
            return [CitationDelta(text_index, citation)] if citation and text_index is not None else []
        if kind == "response.content_part.done":
            key = (int(event.get("output_index", 0)), int(event.get("content_index", 0)))
            return self._stop(self.text_blocks.get(key))
        if kind == "response.output_item.done":
            return self._item_done(int(event.get("output_index", 0)), event.get("item") or {})
        if kind == "response.created":
            self.started = True
            response = event.get("response") or {}
            return [StreamStart(str(response.get("id") or new_id("resp_")), str(response.get("model") or ""))]
        if kind in ("response.completed", "response.incomplete"):
            return self._completed(event.get("response") or {})
        if kind in ("response.failed", "error"):
            error = (event.get("response") or {}).get("error") or event
            raise UpstreamError(f"Upstream error in stream: {error.get('message') or 'response failed'}")
        return []

    def _item_added(self, output_index: int, item: dict[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        if kind in ("function_call", "custom_tool_call"):
            call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
            part = ToolUsePart(call_id, namespace_tools.call_name(item), "", custom=kind == "custom_tool_call")
            index, out = self._new(part)
            self.by_output[output_index] = index
            return out
        if kind == "reasoning":
            index, out = self._new(ThinkingPart(""))
            self.by_output[output_index] = index
            return out
        return []

    def _item_done(self, output_index: int, item: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        kind = item.get("type")
        if kind == "message":
            for (position, _), text_index in list(self.text_blocks.items()):
                if position == output_index:
                    out.extend(self._stop(text_index))
            return out
        if kind == "web_search_call":
            index, out = self._new(web_search_of(item))
            return out + self._stop(index)
        found = self.by_output.get(output_index)
        if found is None:
            return out
        index = found
        whole = item.get("input") if kind == "custom_tool_call" else item.get("arguments")
        if kind in ("function_call", "custom_tool_call") and index not in self.streamed_args and whole:
            out.append(ToolInputDelta(index, str(whole)))
        if kind == "reasoning" and isinstance(item.get("encrypted_content"), str):
            out.append(SignatureDelta(index, item["encrypted_content"], "openai"))
        return out + self._stop(index)

    def _completed(self, response: dict[str, Any]) -> list[StreamEvent]:
        self.ended = True
        out: list[StreamEvent] = []
        for index in sorted(self.open):
            out.extend(self._stop(index))
        stop = stop_reason_of(response.get("status"), response.get("incomplete_details"), self.parts)
        usage = decode_usage(response["usage"]) if isinstance(response.get("usage"), dict) else None
        return [*out, StreamEnd(stop, usage)]

    def finish(self) -> list[StreamEvent]:
        if self.ended:
            return []
        raise UpstreamError("Upstream stream ended before it finished")
