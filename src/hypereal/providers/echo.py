"""`local-echo`: a deterministic chat model for testing clients offline. Not a language model.

It answers on every surface and behaves like a real upstream in the ways clients notice:

- it echoes the last user message back, streamed word by word;
- a prompt can script a call: `call <tool> with <JSON object>`, naming a tool the request
  offers, is answered with a call of exactly that tool with exactly those arguments (a
  custom tool gets the JSON text as its raw input), unless `tool_choice` forces another
  tool. This is how tests make a real client run one of its own tools (`scripted_call`,
  which the test doubles of paid upstreams follow too);
- otherwise, when tools are offered and the prompt names one of them or asks to "call"/"use the
  tool" (or `tool_choice` demands a call), it calls that tool (else the first) with
  arguments made from the tool's JSON schema (a custom tool gets the prompt as its raw
  input), and stops with `tool_use`;
- it runs no hosted tool (web search, file search, …) and takes no setting beyond the
  canonical ones: it answers without them and reports them dropped (`tolerance`);
- system messages in the conversation are instructions, not prompts: it never echoes them;
- after a tool result, it reports what the tool returned;
- when thinking or reasoning is asked for, it thinks first, in a signed thinking block;
- it honours `max_tokens` (stopping with `max_tokens`) and stop sequences;
- in JSON mode it answers `{"echo": ...}`;
- usage follows `hypereal.llm.tokens`, so callers can predict it exactly;
- it answers one choice per call, like an upstream without `n`: the gateway asks it once
  per choice and bills each call's prompt.

Option `token_delay_seconds` slows the stream down, for testing clients that disconnect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

import orjson

from hypereal.catalog.providers import EchoConfig
from hypereal.llm import tokens, tolerance
from hypereal.llm.types import (
    Accumulator,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    SignatureDelta,
    StopReason,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolInputDelta,
    ToolResultPart,
    ToolUsePart,
    Usage,
    new_id,
)
from hypereal.providers.chat import ChatProvider

WORDS = re.compile(r"\s*\S+\s*")
ASKS_FOR_TOOL = re.compile(r"\b(call|invoke|use the tool|use a tool|use tool)\b", re.IGNORECASE)
SCRIPTED_CALL = re.compile(r"\bcall\s+`?([\w.:-]+)`?\s+with\s+(?=\{)", re.IGNORECASE)
EMPTY_PROMPT_REPLY = "Hello! Send me a message and I will echo it."


class EchoProvider(ChatProvider):
    type: ClassVar[str] = "local-echo"
    offline: ClassVar[bool] = True
    config: EchoConfig

    @property
    def delay(self) -> float:
        return self.config.options.token_delay_seconds

    async def complete(self, request: ChatRequest) -> ChatResponse:
        accumulator = Accumulator()
        async for event in self.stream(request):
            accumulator.add(event)
        return accumulator.response()

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        tolerance.takes_nothing(request)
        input_tokens = tokens.request_tokens(request)
        yield StreamStart(new_id("echo-"), request.model, Usage(input_tokens=input_tokens))
        budget = request.max_tokens
        produced = ""
        index = 0
        stop_reason: StopReason = "end_turn"
        stop_sequence: str | None = None

        if request.wants_thinking:
            thought = f"The user wrote {len(request.last_user_text())} characters; I will answer by echoing them."
            yield BlockStart(index, ThinkingPart(""))
            for piece in WORDS.findall(thought):
                await self._pause()
                yield ThinkingDelta(index, piece)
            yield SignatureDelta(index, signature(thought))
            yield BlockStop(index)
            produced += thought
            index += 1

        call = _tool_call(request)
        if call is not None:
            tool, text = call
            yield BlockStart(index, ToolUsePart(new_id("toolu_echo_"), tool.name, "", tool.kind == "custom"))
            middle = len(text) // 2
            for piece in (text[:middle], text[middle:]):
                await self._pause()
                yield ToolInputDelta(index, piece)
            yield BlockStop(index)
            produced += tool.name + text
            stop_reason = "tool_use"
        else:
            reply = _reply(request)
            for stop in request.stop:
                position = reply.find(stop)
                if position >= 0:
                    reply, stop_reason, stop_sequence = reply[:position], "stop_sequence", stop
            yield BlockStart(index, TextPart(""))
            written = ""
            for piece in WORDS.findall(reply):
                if budget is not None and tokens.text_tokens(produced + written + piece) > budget:
                    stop_reason, stop_sequence = "max_tokens", None
                    break
                await self._pause()
                written += piece
                yield TextDelta(index, piece)
            yield BlockStop(index)
            produced += written
        usage = Usage(input_tokens=input_tokens, output_tokens=tokens.text_tokens(produced))
        yield StreamEnd(stop_reason, usage, stop_sequence)

    async def _pause(self) -> None:
        # Yield to the loop even without a delay, as a network upstream would between chunks.
        await asyncio.sleep(self.delay)


def signature(text: str) -> str:
    """A stable stand-in for the upstream's thinking signature."""
    return "echo-sig-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _reply(request: ChatRequest) -> str:
    last = request.last_turn()
    results = [part for part in (last.content if last else []) if isinstance(part, ToolResultPart)]
    if last is not None and last.role == "user" and results:
        reply = " ".join(f"The tool returned: {result.text() or '(nothing)'}" for result in results)
    else:
        reply = request.last_user_text() or EMPTY_PROMPT_REPLY
    if request.response_format and request.response_format.get("type") in ("json_object", "json_schema"):
        return orjson.dumps({"echo": reply}).decode()
    return reply


def scripted_call(text: str, offered: Iterable[str]) -> tuple[str, dict[str, Any]] | None:
    """The call `text` scripts, `call <tool> with <JSON object>`, for a tool among `offered`:
    (its name, its arguments); None when there is no such directive. The first directive
    that names an offered tool and holds a whole JSON object wins."""
    names = set(offered)
    for match in SCRIPTED_CALL.finditer(text):
        if match.group(1) not in names:
            continue
        try:
            arguments, _ = json.JSONDecoder().raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        if isinstance(arguments, dict):
            return match.group(1), arguments
    return None


def _tool_call(request: ChatRequest) -> tuple[Tool, str] | None:
    """The tool to call and its input (JSON arguments, or a custom tool's raw text), if any."""
    if not request.tools or (request.tool_choice is not None and request.tool_choice.mode == "none"):
        return None
    last = request.last_turn()
    if last is not None and any(isinstance(part, ToolResultPart) for part in last.content):
        return None  # a tool just answered: report it rather than calling again
    prompt = request.last_user_text()
    chosen: Tool | None = None
    if request.tool_choice is not None and request.tool_choice.mode == "tool":
        chosen = next((tool for tool in request.tools if tool.name == request.tool_choice.name), None)
    scripted = scripted_call(prompt, [tool.name for tool in request.tools] if chosen is None else [chosen.name])
    if scripted is not None:
        name, arguments = scripted
        return next(tool for tool in request.tools if tool.name == name), orjson.dumps(arguments).decode()
    if chosen is None:
        lowered = prompt.lower()
        chosen = next((tool for tool in request.tools if tool.name.lower() in lowered), None)
    forced = request.tool_choice is not None and request.tool_choice.mode in ("required", "tool")
    if chosen is None and (forced or ASKS_FOR_TOOL.search(prompt)):
        chosen = request.tools[0]
    if chosen is None:
        return None
    if chosen.kind == "custom":
        return chosen, prompt
    return chosen, orjson.dumps(arguments_for(chosen.parameters, prompt)).decode()


def arguments_for(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    """Arguments that satisfy a simple JSON schema: the prompt for the first string, defaults elsewhere."""
    declared = schema.get("properties")
    properties: dict[str, Any] = declared if isinstance(declared, dict) else {}
    listed = schema.get("required")
    required: list[Any] = listed if isinstance(listed, list) else list(properties)
    arguments: dict[str, Any] = {}
    prompt_used = False
    for name in required:
        found = properties.get(name)
        spec: dict[str, Any] = found if isinstance(found, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            arguments[name] = spec["enum"][0]
            continue
        kind = spec.get("type")
        if kind == "integer":
            arguments[name] = 1
        elif kind == "number":
            arguments[name] = 1.0
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "array":
            arguments[name] = []
        elif kind == "object":
            arguments[name] = arguments_for(spec, prompt)
        elif not prompt_used:
            arguments[name], prompt_used = prompt[:200], True
        else:
            arguments[name] = name
    return arguments
