"""OpenAI Chat Completions streams ⇄ canonical events.

Traps handled: tool-call arguments arrive split across chunks (and each call is told apart
only by its `index`), usage comes in a last chunk with no choices after the finish reason,
and OpenAI-compatible servers may close the stream without `[DONE]` once they finished.
A stream that closes before any finish reason was cut, and says so.

Custom tool calls stream as `{"type": "custom", "custom": {"name", "input"}}` pieces of a
tool call, the shape OpenAI sends though its published chunk schema lists only functions.

Citations stream as OpenAI's search models send them, though the published chunk schema
does not list them either: a delta of `annotations` (`url_citation`s spanning the content
sent so far). The SDK's stream helper merges a choice's deltas into one message and fails
on a second list of annotations, so the encoder sends each choice's once, before its finish.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError
from hypereal.llm.custom_tools import StreamUnwrapper
from hypereal.llm.openai_chat import (
    FINISH_REASONS,
    STOP_REASONS,
    citations_of,
    decode_usage,
    encode_usage,
    url_citation,
)
from hypereal.llm.types import (
    BlockStart,
    BlockStop,
    ChoiceEvent,
    ChoiceStreamEvent,
    Citation,
    CitationDelta,
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


class _Citing:
    """The content one choice sent so far, where each of its text blocks began, and their citations."""

    __slots__ = ("annotations", "citations", "sent", "starts")

    def __init__(self) -> None:
        self.sent = 0
        self.starts: dict[int, int] = {}
        self.citations: dict[int, list[Citation]] = {}
        self.annotations: list[dict[str, Any]] = []

    def stop(self, index: int) -> None:
        """A text block ended: its citations span it."""
        start = self.starts.pop(index, None)
        found = self.citations.pop(index, None)
        if found and start is not None:
            self.annotations.extend(url_citation(citation, start, self.sent) for citation in found)

    def end(self) -> list[dict[str, Any]]:
        for index in list(self.starts):
            self.stop(index)
        return self.annotations


class StreamEncoder:
    """Canonical events → `chat.completion.chunk` SSE bytes for a client.

    Of a stream with several choices, each choice's finish chunk is held until the next
    one's, so that `finish` still makes the stream's last chunks, as for one choice.
    """

    def __init__(self, model: str, *, include_usage: bool = False, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = created or int(time.time())
        self.id = new_id("chatcmpl-")
        self.tool_index: dict[int, int] = {}
        self.custom_blocks: set[tuple[int | None, int]] = set()
        """(choice, block index) of the custom tool calls."""
        self._prefix = b""
        usage_field = b',"usage":null' if include_usage else b""
        self._suffix = b',"logprobs":null,"finish_reason":null}]' + usage_field + b"}\n\n"
        self._set_prefix()
        self.citing = _Citing()
        self._choices: dict[int, tuple[bytes, dict[int, int], _Citing]] = {}
        """Chunk prefix, tool slots and citations of each choice, when there are several."""
        self._held_finish: bytes | None = None

    def _set_prefix(self) -> None:
        self._prefix = self._choice_prefix(0)

    def _choice_prefix(self, choice: int) -> bytes:
        head = orjson.dumps(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        )
        return b"data: " + head[:-1] + b',"choices":[{"index":' + str(choice).encode() + b',"delta":'

    def _delta(self, delta: dict[str, Any], prefix: bytes | None = None) -> bytes:
        return (prefix or self._prefix) + orjson.dumps(delta) + self._suffix

    def encode(self, event: StreamEvent, choice: int | None = None) -> bytes:
        """The chunks of `event`; `choice` is the number of the choice it belongs to, if several."""
        prefix, tool_index, citing = (
            (self._prefix, self.tool_index, self.citing) if choice is None else self._choice(choice)
        )
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            citing.sent += len(event.text)
            return self._delta({"content": event.text}, prefix)
        if isinstance(event, ToolInputDelta):
            if not event.partial_json:
                return b""
            slot = tool_index.get(event.index, 0)
            if (choice, event.index) in self.custom_blocks:
                return self._delta({"tool_calls": [{"index": slot, "custom": {"input": event.partial_json}}]}, prefix)
            return self._delta({"tool_calls": [{"index": slot, "function": {"arguments": event.partial_json}}]}, prefix)
        if isinstance(event, ThinkingDelta):
            return self._delta({"reasoning_content": event.text}, prefix) if event.text else b""
        if isinstance(event, BlockStart):
            part = event.part
            if isinstance(part, ToolUsePart):
                slot = tool_index[event.index] = len(tool_index)
                if part.custom:
                    self.custom_blocks.add((choice, event.index))
                    custom = {
                        "index": slot,
                        "id": part.id,
                        "type": "custom",
                        "custom": {"name": part.name, "input": ""},
                    }
                    return self._delta({"tool_calls": [custom]}, prefix)
                function = {"name": part.name, "arguments": ""}
                call = {"index": slot, "id": part.id, "type": "function", "function": function}
                return self._delta({"tool_calls": [call]}, prefix)
            if isinstance(part, TextPart):
                citing.starts[event.index] = citing.sent
            return b""
        if isinstance(event, CitationDelta):
            citing.citations.setdefault(event.index, []).append(event.citation)
            return b""
        if isinstance(event, BlockStop):
            citing.stop(event.index)
            return b""
        if isinstance(event, StreamStart):
            return self._delta({"role": "assistant", "content": ""}, prefix)
        if isinstance(event, StreamEnd):
            if choice is None:
                return self.finish(event.stop_reason, event.usage)
            held, self._held_finish = self._held_finish, self._finish_chunk(prefix, event.stop_reason)
            return self._annotations(citing, prefix) + (held or b"")
        if isinstance(event, ChoiceEvent):
            return self.encode(event.event, event.choice)
        return b""

    def _choice(self, choice: int) -> tuple[bytes, dict[int, int], _Citing]:
        found = self._choices.get(choice)
        if found is None:
            found = self._choices[choice] = (self._choice_prefix(choice), {}, _Citing())
        return found

    def _annotations(self, citing: _Citing, prefix: bytes) -> bytes:
        annotations = citing.end()
        return self._delta({"annotations": annotations}, prefix) if annotations else b""

    def _finish_chunk(self, prefix: bytes, stop_reason: StopReason | None) -> bytes:
        finish = FINISH_REASONS.get(stop_reason or "end_turn", "stop")
        head = prefix + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]"
        return head + (b',"usage":null' if self.include_usage else b"") + b"}\n\n"

    def finish(self, stop_reason: StopReason | None, usage: Usage | None) -> bytes:
        """The last chunks: the annotations, the (last) finish chunk, the usage chunk if asked for, `[DONE]`."""
        if self._held_finish is not None:
            out = self._held_finish
        else:
            out = self._annotations(self.citing, self._prefix) + self._finish_chunk(self._prefix, stop_reason)
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

    Asked for several `choices`, it keeps each choice apart by the chunk's choice `index`
    and wraps the events in `ChoiceEvent`s; with one, chunks of other choices are ignored.
    `custom_names` are the custom tools offered as functions, whose calls are unwrapped.
    """

    def __init__(self, custom_names: frozenset[str] = frozenset(), choices: int = 1) -> None:
        self.started = False
        self.ended = False
        self.usage: Usage | None = None
        self.choices = [_Choice(custom_names) for _ in range(choices)]
        self.several = choices > 1

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
            out.extend(self._start(str(chunk.get("id") or new_id("chatcmpl-")), str(chunk.get("model") or "")))
        for choice in chunk.get("choices") or ():
            number = choice.get("index", 0)
            if not self.several:
                if number == 0:
                    out.extend(self.choices[0].feed(choice))
            elif isinstance(number, int) and 0 <= number < len(self.choices):
                state = self.choices[number]
                events = state.feed(choice)
                if state.saw_finish and not state.ended:
                    events += state.end()
                out.extend(ChoiceEvent(number, event) for event in events)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = decode_usage(usage)
        return out

    def _start(self, id: str, model: str) -> list[StreamEvent]:
        self.started = True
        if not self.several:
            return [StreamStart(id, model)]
        return [ChoiceEvent(number, StreamStart(id, model)) for number in range(len(self.choices))]

    def finish(self, *, done: bool = False) -> list[StreamEvent]:
        """The end of the upstream's stream: at `[DONE]`, or when the connection closed."""
        if self.ended:
            return []
        if not done and not all(choice.saw_finish for choice in self.choices):
            raise UpstreamError("Upstream stream ended before it finished")
        self.ended = True
        out = [] if self.started else self._start(new_id("chatcmpl-"), "")
        first = self.choices[0]
        if not self.several:
            return [*out, *first.close(), StreamEnd(first.stop_reason or "end_turn", self.usage)]
        for number, choice in enumerate(self.choices):
            if not choice.ended:
                out.extend(ChoiceEvent(number, event) for event in choice.end())
        return [*out, StreamEnd(first.stop_reason or "end_turn", self.usage)]


class _Choice:
    """The blocks of one choice, opened and closed as its deltas arrive."""

    def __init__(self, custom_names: frozenset[str]) -> None:
        self.unwrapper = StreamUnwrapper(custom_names)
        self.next_index = 0
        self.open_index: int | None = None
        self.open_kind = ""
        self.tools: dict[int, int] = {}
        self.stop_reason: StopReason | None = None
        self.saw_finish = False
        self.ended = False

    def feed(self, choice: dict[str, Any]) -> list[ChoiceStreamEvent]:
        out: list[ChoiceStreamEvent] = []
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
        citations = citations_of(delta.get("annotations"))
        if citations:
            out.extend(self._ensure("text"))
            out.extend(CitationDelta(self.next_index - 1, citation) for citation in citations)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            out.extend(self._tool_call(call.get("index", position), call))
        finish = choice.get("finish_reason")
        if finish:
            self.saw_finish = True
            self.stop_reason = STOP_REASONS.get(finish, "end_turn")
            out.extend(self.close())
        return out

    def _tool_call(self, slot: int, call: dict[str, Any]) -> list[ChoiceStreamEvent]:
        custom = call.get("custom")
        is_custom = call.get("type") == "custom" or (isinstance(custom, dict) and bool(custom))
        named = (custom if is_custom else call.get("function")) or {}
        out: list[ChoiceStreamEvent] = []
        if slot not in self.tools:
            out.extend(self.close())
            index = self.tools[slot] = self.next_index
            self.next_index += 1
            self.open_index, self.open_kind = index, "tool"
            part = ToolUsePart(str(call.get("id") or new_id("call_")), str(named.get("name") or ""), "", is_custom)
            out.append(BlockStart(index, self.unwrapper.start(index, part)))
        piece = named.get("input" if is_custom else "arguments")
        if isinstance(piece, str) and piece:
            if is_custom:
                out.append(ToolInputDelta(self.tools[slot], piece))
            else:
                out.extend(self.unwrapper.delta(self.tools[slot], piece))
        return out

    def _ensure(self, kind: str) -> list[ChoiceStreamEvent]:
        if self.open_index is not None and self.open_kind == kind:
            return []
        out = self.close()
        index = self.next_index
        self.next_index += 1
        self.open_index, self.open_kind = index, kind
        out.append(BlockStart(index, TextPart("") if kind == "text" else ThinkingPart("")))
        return out

    def close(self) -> list[ChoiceStreamEvent]:
        if self.open_index is None:
            return []
        index, self.open_index, self.open_kind = self.open_index, None, ""
        return [*self.unwrapper.stop(index), BlockStop(index)]

    def end(self) -> list[ChoiceStreamEvent]:
        """The end of this choice in a stream of several (whose usage comes once, for all)."""
        self.ended = True
        return [*self.close(), StreamEnd(self.stop_reason or "end_turn")]
