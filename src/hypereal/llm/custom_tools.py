"""Custom (freeform) tools for upstreams that only know JSON-schema tools.

OpenAI's custom tools (Codex's `apply_patch`) take raw text, optionally constrained by a
grammar. Anthropic and most OpenAI-compatible servers have no such thing, so there a
custom tool is offered as a function with one string field, `input`, and a description
that carries the grammar so the model knows the syntax; the call the model makes,
`{"input": "..."}`, is turned back into the raw text before the client sees it.

Streaming, the JSON string is decoded as it arrives (`InputUnwrapper`), so the client gets
the text in pieces, escapes and surrogate pairs split across chunks included; JSON of any
other shape is held until the call ends and unwrapped whole.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from hypereal.llm.types import ChatRequest, ChoiceStreamEvent, Tool, ToolInputDelta, ToolUsePart

INPUT_FIELD = "input"
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        INPUT_FIELD: {"type": "string", "description": "The tool's whole input as raw text, exactly as it is meant."}
    },
    "required": [INPUT_FIELD],
}
_OPENING = re.compile(r'\s*\{\s*"input"\s*:\s*"')
_HEX = frozenset("0123456789abcdefABCDEF")


def custom_tool_names(request: ChatRequest) -> frozenset[str]:
    return frozenset(tool.name for tool in request.tools if tool.kind == "custom")


def wrapper_description(tool: Tool) -> str:
    """The description of a custom tool offered as a function: its own, then how to fill `input`."""
    lines = [tool.description] if tool.description else []
    lines.append("Put the tool's whole input, as raw text, in the string field `input`.")
    fmt = tool.format or {}
    definition = fmt.get("definition")
    if fmt.get("type") == "grammar" and isinstance(definition, str) and definition:
        if fmt.get("syntax") == "regex":
            lines.append(f"The input must match this regular expression:\n{definition}")
        else:
            syntax = str(fmt.get("syntax") or "lark")
            lines.append(f"The input must follow this {syntax} grammar:\n{definition}")
    return "\n\n".join(lines)


def unwrap(arguments: str) -> str:
    """The raw text of a wrapped call's JSON; JSON of another shape is passed on as it came."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(INPUT_FIELD), str):
        return str(value[INPUT_FIELD])
    return arguments


def unwrap_part(part: ToolUsePart, names: frozenset[str]) -> ToolUsePart:
    if part.custom or part.name not in names:
        return part
    return ToolUsePart(part.id, part.name, unwrap(part.arguments), custom=True)


class InputUnwrapper:
    """The raw text of one wrapped call, decoded from its JSON as the JSON streams in."""

    __slots__ = ("held", "mode", "raw", "sent")

    def __init__(self) -> None:
        self.raw = ""
        """All the JSON received."""
        self.held = ""
        """Received JSON not decoded yet: the opening, or the end of the string cut inside an escape."""
        self.mode = "opening"  # then "string", "done", or "whole" when the JSON has another shape
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        if self.mode in ("done", "whole"):
            return ""
        self.held += piece
        if self.mode == "opening":
            opening = _OPENING.match(self.held)
            if opening is None:
                if not _could_open(self.held):
                    self.mode = "whole"
                return ""
            self.mode = "string"
            self.held = self.held[opening.end() :]
        end, closed = _decodable(self.held)
        if end == 0 and not closed:
            return ""
        try:
            text = orjson.loads('"' + self.held[:end] + '"')
        except orjson.JSONDecodeError:
            self.mode = "whole"  # not valid JSON after all; what the call ends with decides
            return ""
        self.held = self.held[end:]
        if closed:
            self.mode = "done"
        self.sent += text
        return str(text)

    def finish(self) -> str:
        """What is left to send when the call ends, given everything sent so far."""
        whole = unwrap(self.raw) if self.raw else ""
        if whole.startswith(self.sent):
            return whole[len(self.sent) :]
        return ""  # a broken string: what was sent already is all the client can have


def _could_open(text: str) -> bool:
    """Whether `text` may still grow into `{"input": "`."""
    squeezed = "".join(text.split())
    return '{"input":"'.startswith(squeezed)


def _decodable(text: str) -> tuple[int, bool]:
    """(length of the longest prefix of a JSON string body that decodes alone, whether the string ends there).

    A prefix never ends inside an escape, nor between the two halves of a surrogate pair.
    """
    position = 0
    size = len(text)
    while position < size:
        char = text[position]
        if char == '"':
            return position, True
        if char != "\\":
            position += 1
            continue
        if position + 1 >= size:
            break
        if text[position + 1] != "u":
            position += 2
            continue
        if position + 6 > size or not _HEX.issuperset(text[position + 2 : position + 6]):
            break
        if 0xD800 <= int(text[position + 2 : position + 6], 16) < 0xDC00:
            if position + 12 > size:
                break
            position += 12
        else:
            position += 6
    return position, False


class StreamUnwrapper:
    """Turns a decoded upstream stream's wrapped calls back into custom calls, block by block."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.open: dict[int, InputUnwrapper] = {}

    def start(self, index: int, part: ToolUsePart) -> ToolUsePart:
        if part.name not in self.names or part.custom:
            return part
        self.open[index] = InputUnwrapper()
        return ToolUsePart(part.id, part.name, "", custom=True)

    def delta(self, index: int, partial_json: str) -> list[ChoiceStreamEvent]:
        unwrapper = self.open.get(index)
        if unwrapper is None:
            return [ToolInputDelta(index, partial_json)]
        text = unwrapper.feed(partial_json)
        return [ToolInputDelta(index, text)] if text else []

    def stop(self, index: int) -> list[ChoiceStreamEvent]:
        unwrapper = self.open.pop(index, None)
        if unwrapper is None:
            return []
        rest = unwrapper.finish()
        return [ToolInputDelta(index, rest)] if rest else []
