"""The canonical chat representation every wire format is translated to and from.

It follows the shape of Anthropic's Messages API, the richest of the three (content blocks,
thinking with signatures, tool results inside user turns), so that translating a
conversation through it loses as little as possible:

- the system prompt lives beside the messages; instructions a client gives in the midst of
  the conversation (Claude Code's system turns, a Chat Completions system message after the
  first turn, a Responses developer message) stay where they were, as messages of role
  `system` holding text;
- a message is a role (`user`, `assistant` or `system`) and a list of parts;
- tool results are parts of a user message; tool calls are parts of an assistant message;
- tool-call arguments are kept as JSON text, because both streaming formats deliver them
  as fragments of text and a half-received call is still worth passing on; a call of a
  custom (freeform) tool holds its raw input text there instead;
- tools a vendor defines (OpenAI's hosted tools, Anthropic's server tools and the tools
  Anthropic's models are trained on) travel beside the client's own tools, as the client
  sent them, so each upstream codec decides whether it can run them;
- settings of the client's body that have no canonical counterpart travel as the client
  sent them (`ChatRequest.extras`), and what a codec leaves out is listed in
  `ChatRequest.dropped` (`hypereal.llm.tolerance`).

A stream is a sequence of `StreamEvent`s: one `StreamStart`, then for each content block
a `BlockStart`, deltas and a `BlockStop`, then one `StreamEnd` carrying the stop reason
and the usage. An upstream failure in mid-stream is raised from the iterator as a
`hypereal.errors.HyperealError`.

A stream of several choices (Chat Completions' `n`) carries each choice's own sequence,
from its `StreamStart` to its `StreamEnd`, wrapped in `ChoiceEvent`s and interleaved as
they arrive, then one bare `StreamEnd` with the usage of them all.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Role = Literal["user", "assistant", "system"]
Vendor = Literal["openai", "anthropic"]
Wire = Literal["openai-chat", "openai-responses", "anthropic-messages"]
"""A wire format, on the client's side or the upstream's."""
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"]
ToolChoiceMode = Literal["auto", "none", "required", "tool"]
ToolKind = Literal["function", "custom"]


def new_id(prefix: str) -> str:
    """An id in the style of the wire format that will show it, e.g. `chatcmpl-…`, `msg_…`."""
    return prefix + secrets.token_hex(12)


@dataclass(slots=True)
class Citation:
    """A web page a stretch of text rests on (Anthropic's web search result location, OpenAI's url_citation)."""

    url: str
    title: str = ""
    cited_text: str = ""


@dataclass(slots=True)
class TextPart:
    text: str
    citations: list[Citation] = field(default_factory=list)
    """Pages the whole text cites; set by upstreams that searched the web."""


@dataclass(slots=True)
class ImagePart:
    """An image as an http(s) URL or a `data:` URL (base64)."""

    url: str
    detail: str | None = None

    def inline(self) -> tuple[str, str] | None:
        """(media type, base64 data) for a data URL; None for a remote URL."""
        if not self.url.startswith("data:"):
            return None
        header, _, data = self.url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        return media_type, data


@dataclass(slots=True)
class ToolUsePart:
    id: str
    name: str
    arguments: str = ""
    """The call's input as JSON text (possibly partial while streaming); for a custom call, the raw input."""
    custom: bool = False
    """A call of a custom (freeform) tool, whose input is text rather than JSON."""

    def input(self) -> dict[str, Any]:
        """The arguments as an object; `{}` for empty or broken JSON, which upstreams reject less.

        A custom call's text comes wrapped as `{"input": text}`, the shape upstreams without
        custom tools are offered them in (see `hypereal.llm.custom_tools`).
        """
        if self.custom:
            return {"input": self.arguments}
        if not self.arguments.strip():
            return {}
        try:
            value = orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {"value": value}


@dataclass(slots=True)
class ToolResultPart:
    tool_use_id: str
    content: list[TextPart | ImagePart] = field(default_factory=list)
    is_error: bool = False

    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(slots=True)
class ThinkingPart:
    text: str
    signature: str | None = None
    """The reasoning's continuity token: Anthropic's signature or OpenAI's encrypted content,
    which only the vendor that made it accepts back (`hypereal.llm.continuity`)."""
    origin: Vendor | None = None
    """The vendor whose token `signature` is; None for one of no vendor (the echo provider's)."""


@dataclass(slots=True)
class RedactedThinkingPart:
    data: str


@dataclass(slots=True)
class WebSearchPart:
    """A web search the upstream ran itself: the query and the pages it found.

    Only upstreams that search on their own produce it; it is an answer's record, never
    sent back (the text after it carries what was found, with citations).
    """

    id: str
    query: str = ""
    sources: list[Citation] = field(default_factory=list)
    failed: bool = False


Part = TextPart | ImagePart | ToolUsePart | ToolResultPart | ThinkingPart | RedactedThinkingPart | WebSearchPart
OutputPart = TextPart | ToolUsePart | ThinkingPart | RedactedThinkingPart | WebSearchPart


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part]
    """A system message holds text parts only."""


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    kind: ToolKind = "function"
    """`custom`: a freeform tool whose calls carry raw text (Codex's apply_patch), not JSON."""
    format: dict[str, Any] | None = None
    """A custom tool's input format in the Responses API's shape: `{"type": "text"}` or
    `{"type": "grammar", "syntax": "lark" | "regex", "definition": ...}`; None for free text."""
    anthropic: dict[str, Any] | None = None
    """The Anthropic-defined tool this function stands for (bash, the text editor), as the
    client declared it: Anthropic gets that, other upstreams the function and its published schema."""


@dataclass(slots=True)
class HostedTool:
    """A tool a vendor defines: one its upstream runs itself (web search, file search, code
    execution, …) or one only its models know (Anthropic's computer use).

    Kept as the client sent it, in `vendor`'s shape (OpenAI's Responses API or Anthropic's
    Messages API): only some upstreams can run one, and each upstream codec maps it or
    refuses it, naming `field`.
    """

    spec: dict[str, Any]
    field: str = "tools"
    vendor: Vendor = "openai"

    @property
    def type(self) -> str:
        return str(self.spec.get("type") or "")


@dataclass(slots=True)
class ToolChoice:
    mode: ToolChoiceMode = "auto"
    name: str | None = None
    """The tool to call when mode is `tool`."""
    hosted: str | None = None
    """The type of a vendor-defined tool the client forces (the Responses API's
    `{"type": "web_search"}`); `mode` stays `auto` for the routes that run it."""


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    hosted_tools: list[HostedTool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    response_format: dict[str, Any] | None = None
    """OpenAI's shape: {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}."""
    reasoning_effort: str | None = None
    """In OpenAI's words (`low` … `xhigh`); Anthropic's `output_config.effort` is mapped to it."""
    thinking_budget: int | None = None
    adaptive_thinking: bool = False
    """Anthropic's adaptive thinking, where the model decides how much to think."""
    stream: bool = False
    user: str | None = None
    surface: Wire | None = None
    """The wire format the client spoke; None for a request made in code."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Settings of the client's body the canonical form has no field for, as the client sent
    them, keyed by their path there (`context_management`, `text.verbosity`)."""
    dropped: list[str] = field(default_factory=list)
    """What the translation left out, as `hypereal.llm.tolerance` entries."""

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                texts = [part.text for part in message.content if isinstance(part, TextPart)]
                if texts:
                    return "\n".join(texts)
        return ""

    def last_turn(self) -> Message | None:
        """The last user or assistant message: a system message is not a turn."""
        return next((message for message in reversed(self.messages) if message.role != "system"), None)

    def effort(self) -> str | None:
        """The reasoning effort in OpenAI's words: the one asked for, else the thinking budget's,
        else `medium` for adaptive thinking."""
        if self.reasoning_effort:
            return self.reasoning_effort
        return effort_for_budget(self.thinking_budget) or ("medium" if self.adaptive_thinking else None)

    @property
    def wants_thinking(self) -> bool:
        return bool(self.thinking_budget) or self.adaptive_thinking or self.effort() not in (None, "none", "minimal")


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    """All prompt tokens, cached ones included (OpenAI's convention)."""
    output_tokens: int = 0
    cached_input_tokens: int = 0
    """Prompt tokens read from the upstream's cache, a part of `input_tokens`."""
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0
    """Output tokens spent on reasoning, a part of `output_tokens`."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(slots=True)
class Choice:
    content: list[OutputPart]
    stop_reason: StopReason | None = "end_turn"
    stop_sequence: str | None = None


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    content: list[OutputPart]
    stop_reason: StopReason | None = "end_turn"
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    extra_choices: list[Choice] = field(default_factory=list)
    """Choices after the first when a Chat Completions client asked for `n` > 1."""

    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


# ---------------------------------------------------------------- stream events


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    usage: Usage = field(default_factory=Usage)
    """What is known at the start: usually the input tokens (an estimate when the upstream says later)."""


@dataclass(slots=True)
class BlockStart:
    index: int
    part: OutputPart
    """An empty shell of the block: TextPart(""), ThinkingPart(""), ToolUsePart(id, name, "")."""


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str


@dataclass(slots=True)
class SignatureDelta:
    index: int
    signature: str
    origin: Vendor | None = None
    """As `ThinkingPart.origin`."""


@dataclass(slots=True)
class ToolInputDelta:
    index: int
    partial_json: str
    """A piece of the arguments' JSON; of the raw input text for a custom call."""


@dataclass(slots=True)
class CitationDelta:
    """A citation of the text block at `index` (it covers the whole block)."""

    index: int
    citation: Citation


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class StreamEnd:
    stop_reason: StopReason | None
    usage: Usage | None = None
    """None when the upstream never said; the caller then counts what was produced."""
    stop_sequence: str | None = None


ChoiceStreamEvent = (
    StreamStart
    | BlockStart
    | TextDelta
    | ThinkingDelta
    | SignatureDelta
    | ToolInputDelta
    | CitationDelta
    | BlockStop
    | StreamEnd
)


@dataclass(slots=True)
class ChoiceEvent:
    """An event of choice number `choice` in a stream that carries several."""

    choice: int
    event: ChoiceStreamEvent


StreamEvent = ChoiceStreamEvent | ChoiceEvent


class Accumulator:
    """Builds the ChatResponse a stream amounts to; also tells how much output it carried so far."""

    def __init__(self, id: str = "", model: str = "") -> None:
        self.id = id
        self.model = model
        self.blocks: dict[int, OutputPart] = {}
        self.stop_reason: StopReason | None = None
        self.stop_sequence: str | None = None
        self.usage: Usage | None = None
        self.start_usage = Usage()
        self.output_chars = 0
        self.ended = False
        self.choices: dict[int, Accumulator] = {}
        """One per choice, when the stream carries several."""

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            block = self.blocks.get(event.index)
            if isinstance(block, TextPart):
                block.text += event.text
            self.output_chars += len(event.text)
        elif isinstance(event, ToolInputDelta):
            block = self.blocks.get(event.index)
            if isinstance(block, ToolUsePart):
                block.arguments += event.partial_json
            self.output_chars += len(event.partial_json)
        elif isinstance(event, ThinkingDelta):
            block = self.blocks.get(event.index)
            if isinstance(block, ThinkingPart):
                block.text += event.text
            self.output_chars += len(event.text)
        elif isinstance(event, SignatureDelta):
            block = self.blocks.get(event.index)
            if isinstance(block, ThinkingPart):
                block.signature = (block.signature or "") + event.signature
                block.origin = event.origin
        elif isinstance(event, CitationDelta):
            block = self.blocks.get(event.index)
            if isinstance(block, TextPart):
                block.citations.append(event.citation)
        elif isinstance(event, BlockStart):
            self.blocks[event.index] = _copy_part(event.part)
            if isinstance(event.part, ToolUsePart):
                self.output_chars += len(event.part.name)
        elif isinstance(event, StreamStart):
            self.id = event.id or self.id
            self.model = event.model or self.model
            self.start_usage = event.usage
        elif isinstance(event, StreamEnd):
            self.stop_reason = event.stop_reason
            self.stop_sequence = event.stop_sequence
            self.usage = event.usage
            self.ended = True
        elif isinstance(event, ChoiceEvent):
            self._add_to_choice(event)

    def _add_to_choice(self, event: ChoiceEvent) -> None:
        choice = self.choices.get(event.choice)
        if choice is None:
            choice = self.choices[event.choice] = Accumulator()
        before = choice.output_chars
        choice.add(event.event)
        self.output_chars += choice.output_chars - before
        if isinstance(event.event, StreamStart):
            self.id = self.id or event.event.id
            self.model = self.model or event.event.model
            self.start_usage = self.start_usage + event.event.usage

    def content(self) -> list[OutputPart]:
        return [self.blocks[index] for index in sorted(self.blocks)]

    def response(self) -> ChatResponse:
        """The answer so far; of several choices, the first is the main one and the others extra."""
        choices = [self.choices[number] for number in sorted(self.choices)] or [self]
        main = choices[0]
        usage = self.usage or Usage(input_tokens=self.start_usage.input_tokens)
        return ChatResponse(
            id=self.id,
            model=self.model,
            content=main.content(),
            stop_reason=main.stop_reason,
            usage=usage,
            stop_sequence=main.stop_sequence,
            extra_choices=[Choice(extra.content(), extra.stop_reason, extra.stop_sequence) for extra in choices[1:]],
        )


def _copy_part(part: OutputPart) -> OutputPart:
    if isinstance(part, TextPart):
        return TextPart(part.text, list(part.citations))
    if isinstance(part, ThinkingPart):
        return ThinkingPart(part.text, part.signature, part.origin)
    if isinstance(part, ToolUsePart):
        return ToolUsePart(part.id, part.name, part.arguments, part.custom)
    if isinstance(part, WebSearchPart):
        return WebSearchPart(part.id, part.query, list(part.sources), part.failed)
    return RedactedThinkingPart(part.data)


def events_of(response: ChatResponse) -> list[StreamEvent]:
    """A finished response as the stream that would have produced it (for one-shot upstreams)."""
    start_usage = Usage(input_tokens=response.usage.input_tokens)
    events: list[StreamEvent] = [StreamStart(response.id, response.model, start_usage)]
    for index, part in enumerate(response.content):
        if isinstance(part, TextPart):
            events.append(BlockStart(index, TextPart("")))
            events.extend(CitationDelta(index, citation) for citation in part.citations)
            if part.text:
                events.append(TextDelta(index, part.text))
        elif isinstance(part, ThinkingPart):
            events.append(BlockStart(index, ThinkingPart("")))
            if part.text:
                events.append(ThinkingDelta(index, part.text))
            if part.signature:
                events.append(SignatureDelta(index, part.signature, part.origin))
        elif isinstance(part, ToolUsePart):
            events.append(BlockStart(index, ToolUsePart(part.id, part.name, "", part.custom)))
            if part.arguments:
                events.append(ToolInputDelta(index, part.arguments))
        elif isinstance(part, WebSearchPart):
            events.append(BlockStart(index, _copy_part(part)))
        else:
            events.append(BlockStart(index, RedactedThinkingPart(part.data)))
        events.append(BlockStop(index))
    events.append(StreamEnd(response.stop_reason, response.usage, response.stop_sequence))
    return events


# Reasoning effort (OpenAI), thinking budget and effort (Anthropic) describe the same knob.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}
ANTHROPIC_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}
"""Anthropic's `output_config.effort` values in OpenAI's words."""
MIN_THINKING_BUDGET = 1024


def budget_for_effort(effort: str | None) -> int | None:
    if effort is None or effort == "none":
        return None
    return EFFORT_BUDGETS.get(effort, EFFORT_BUDGETS["medium"])


def effort_for_budget(budget: int | None) -> str | None:
    if not budget:
        return None
    if budget <= EFFORT_BUDGETS["low"]:
        return "low"
    if budget <= EFFORT_BUDGETS["medium"]:
        return "medium"
    return "high"
