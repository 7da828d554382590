"""Anthropic Messages ⇄ canonical: requests and responses, both ways.

Surface side: `decode_request`, `encode_response`; upstream side: `encode_request`,
`decode_response`. The stream codecs are in `anthropic_stream`.

Traps handled here: Anthropic rejects empty text blocks and empty messages, so they are
dropped on the way out; thinking blocks are only valid with Anthropic's own signature, so
reasoning from other upstreams is not sent back to Anthropic, and signatures of other
vendors reach clients tagged (`continuity`); usage counts input tokens apart from cache
reads and writes, while the canonical form counts them all as input.

Anthropic has no custom (freeform) tools: they go out wrapped as functions and their calls
come back unwrapped (`custom_tools`), for which the decoders are told the custom tools'
names. OpenAI's web search goes out as Anthropic's server tool, and a search comes back to
a client as Anthropic gives it (`hosted_tools`). The tools Anthropic defines, server tools
among them, are read in `anthropic_tools` and go back to Anthropic as the client declared them.

What the canonical form cannot hold follows `tolerance`: a system turn inside `messages`
(Claude Code puts one after the first user turn) stays in its place, as a system message;
adaptive thinking and `output_config.effort` are the reasoning effort (`max` is OpenAI's
`xhigh`, adaptive without an effort `medium`) and go back to Anthropic as such, while an
OpenAI client's effort becomes a thinking budget; `metadata.user_id` is the end user's id;
the settings only Anthropic has (`context_management`, `top_k`, how thinking is shown, a
thinking kind not known here) go back to Anthropic as they came. A text document or a search
result is text; a document of another source is input the model must see, refused with a
400; `cache_control`, blocks only Anthropic interprets (server tool results) and roles or
blocks not known here are dropped and reported.
"""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.errors import UpstreamError, ValidationFailed
from hypereal.llm import anthropic_tools, continuity, custom_tools, fields, hosted_tools, tolerance
from hypereal.llm.types import (
    ANTHROPIC_EFFORTS,
    MIN_THINKING_BUDGET,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OutputPart,
    Part,
    RedactedThinkingPart,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
    WebSearchPart,
    budget_for_effort,
    new_id,
)

DEFAULT_MAX_TOKENS = 8192
STOP_REASONS: frozenset[str] = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}
)
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else."
UPSTREAM = "Anthropic Messages"
EFFORTS = {openai: anthropic for anthropic, openai in ANTHROPIC_EFFORTS.items()}
"""Efforts in OpenAI's words as Anthropic's `output_config.effort`."""


# ---------------------------------------------------------------- requests


KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "metadata",
        "stream",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "thinking",
        "output_config",
    }
)
"""The fields the decoder reads; the others travel as extras (`tolerance.carry`)."""
TEXT_SOURCES = frozenset({"text", "content"})
"""Document sources that hold text, which any model can be given."""


def decode_request(body: dict[str, Any]) -> ChatRequest:
    """A client's Messages body as a canonical request."""
    model = fields.string(body, "model", required=True)
    assert model is not None
    dropped: list[str] = []
    extras = tolerance.extras(body, KNOWN_FIELDS)
    messages: list[Message] = []
    for position, raw in enumerate(fields.array(body, "messages", required=True)):
        where = f"messages.{position}"
        message = fields.mapping(raw, where)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            tolerance.drop(dropped, where, str(role))
            continue
        parts = decode_blocks(message.get("content"), f"{where}.content", dropped)
        if role == "system":
            parts = [part for part in parts if isinstance(part, TextPart)]
        messages.append(Message(role, parts))
    tools, hosted = anthropic_tools.decode_tools(fields.array(body, "tools"), dropped)
    tool_choice, parallel = _decode_tool_choice(body.get("tool_choice"), dropped)
    budget, adaptive = _decode_thinking(body.get("thinking"), extras)
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return ChatRequest(
        model=model,
        messages=messages,
        system=_decode_system(body.get("system"), dropped),
        tools=tools,
        hosted_tools=hosted,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=fields.integer(body, "max_tokens", minimum=1),
        temperature=fields.number(body, "temperature"),
        top_p=fields.number(body, "top_p"),
        stop=fields.stop_list(body.get("stop_sequences"), "stop_sequences"),
        reasoning_effort=_decode_effort(body.get("output_config"), extras),
        thinking_budget=budget,
        adaptive_thinking=adaptive,
        stream=fields.boolean(body, "stream"),
        user=user if isinstance(user, str) else None,
        surface="anthropic-messages",
        extras=extras,
        dropped=dropped,
    )


def _decode_thinking(thinking: Any, extras: dict[str, Any]) -> tuple[int | None, bool]:
    """(budget, adaptive) of the `thinking` setting; a kind not known here stays an extra."""
    if not isinstance(thinking, dict) or thinking.get("type") == "disabled":
        return None, False
    kind = thinking.get("type")
    if kind == "enabled":
        return fields.integer(thinking, "budget_tokens", minimum=1) or MIN_THINKING_BUDGET, False
    if kind == "adaptive":
        for key, value in thinking.items():
            if key != "type":
                extras[f"thinking.{key}"] = value  # how to show it (`display`): Anthropic's alone
        return None, True
    extras["thinking"] = thinking
    return None, False


def _decode_effort(config: Any, extras: dict[str, Any]) -> str | None:
    """The effort of `output_config`, in OpenAI's words; its other settings stay extras."""
    if not isinstance(config, dict):
        return None
    given = config.get("effort")
    effort = ANTHROPIC_EFFORTS.get(given) if isinstance(given, str) else None
    for key, value in config.items():
        if key != "effort" or effort is None:
            extras[f"output_config.{key}"] = value
    return effort


def _decode_system(system: Any, dropped: list[str]) -> list[TextPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(system)] if system else []
    if isinstance(system, list):
        return [part for part in decode_blocks(system, "system", dropped) if isinstance(part, TextPart)]
    raise fields.invalid("system", "a string or an array of text blocks")


def decode_blocks(content: Any, where: str, dropped: list[str]) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise fields.invalid(where, "a string or an array of content blocks")
    parts: list[Part] = []
    for index, raw in enumerate(content):
        here = f"{where}.{index}"
        block = fields.mapping(raw, here)
        if "cache_control" in block:
            dropped.append(tolerance.CACHE_CONTROL)
        kind = block.get("type")
        if kind == "text":
            if isinstance(block.get("text"), str) and block["text"]:
                parts.append(TextPart(block["text"]))
        elif kind == "image":
            parts.append(_decode_image(block, here))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            parts.append(ToolUsePart(str(block.get("id") or new_id("toolu_")), str(block.get("name") or ""), arguments))
        elif kind == "tool_result":
            inner = block.get("content")
            result: list[TextPart | ImagePart] = []
            for part in decode_blocks(inner, f"{here}.content", dropped) if inner is not None else []:
                if isinstance(part, TextPart | ImagePart):
                    result.append(part)
            parts.append(ToolResultPart(str(block.get("tool_use_id") or ""), result, bool(block.get("is_error"))))
        elif kind == "thinking":
            parts.append(continuity.thinking(str(block.get("thinking") or ""), block.get("signature"), "anthropic"))
        elif kind == "redacted_thinking":
            parts.append(RedactedThinkingPart(str(block.get("data") or "")))
        elif kind in ("document", "search_result"):
            parts.extend(_text_of(block, here, dropped))
        else:
            # Server tool blocks and whatever else only Anthropic can interpret.
            tolerance.drop(dropped, here, str(kind))
    return parts


def _text_of(block: dict[str, Any], where: str, dropped: list[str]) -> list[Part]:
    """A document or search result as the text it holds; a document of another source
    (a PDF, a file) is input the model must see and cannot be given here."""
    title = block.get("title") if isinstance(block.get("title"), str) else ""
    if block["type"] == "search_result":
        heading = " ".join(str(part) for part in (title, block.get("source") or "") if part)
        inner = decode_blocks(block.get("content") or [], f"{where}.content", dropped)
        return [TextPart(heading), *inner] if heading else inner
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if not isinstance(source, dict) or kind not in TEXT_SOURCES:
        raise tolerance.cannot_take(f"document ({kind or 'no'} source)", f"{where}.source")
    inner = decode_blocks(source.get("data") if kind == "text" else source.get("content"), f"{where}.source", dropped)
    return [TextPart(title), *inner] if title else inner


def _decode_image(block: dict[str, Any], where: str) -> ImagePart:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return ImagePart(f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}")
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return ImagePart(source["url"])
    raise fields.invalid(f"{where}.source", "a base64 or url image source")


def _decode_tool_choice(value: Any, dropped: list[str]) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    choice = fields.mapping(value, "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "none":
        return ToolChoice("none"), parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return ToolChoice("tool", choice["name"]), parallel
    tolerance.drop(dropped, "tool_choice", str(kind))
    return None, parallel


def encode_request(request: ChatRequest, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """A canonical request as a Messages body for an upstream.

    An Anthropic client's thinking settings go back as it sent them: a budget, or adaptive
    thinking with `output_config.effort`. An OpenAI client's reasoning effort becomes a
    thinking budget (`EFFORT_BUDGETS`).
    """
    own_settings = request.surface == "anthropic-messages"
    budget = request.thinking_budget or (None if own_settings else budget_for_effort(request.reasoning_effort))
    # Without a client limit, thinking gets its budget on top of room for the answer.
    max_tokens = request.max_tokens or default_max_tokens + (budget or 0)
    messages = _encode_messages(request)
    body: dict[str, Any] = {"model": request.model, "max_tokens": max_tokens, "messages": messages}
    system = [{"type": "text", "text": part.text} for part in request.system if part.text]
    if request.response_format and request.response_format.get("type") in ("json_object", "json_schema"):
        schema = (request.response_format.get("json_schema") or {}).get("schema")
        hint = JSON_INSTRUCTION
        if schema:
            hint += f" It must match this JSON schema: {orjson.dumps(schema).decode()}"
        system.append({"type": "text", "text": hint})
    if system:
        body["system"] = system
    tools = [_encode_tool(tool) for tool in request.tools]
    tools += tolerance.hosted(request, lambda hosted: hosted_tools.for_anthropic(hosted, UPSTREAM))
    if tools:
        body["tools"] = tools
        choice = _encode_tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    if budget:
        budget = min(budget, max_tokens - 1)
    thinks = request.adaptive_thinking or bool(budget and budget >= MIN_THINKING_BUDGET)
    stays = thinks and continuity.thinking_may_stay(messages)
    if stays and request.adaptive_thinking:
        body["thinking"] = {"type": "adaptive"}
    elif stays:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        # Sampling parameters are refused together with thinking.
        if request.temperature is not None:
            body["temperature"] = min(max(request.temperature, 0.0), 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
    if own_settings and request.reasoning_effort in EFFORTS:
        body["output_config"] = {"effort": EFFORTS[request.reasoning_effort]}
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    tolerance.carry(body, request, "anthropic-messages")
    if thinks and not stays:
        body.pop("thinking", None)  # with the client's settings of it (`display`)
    return body


def refusal(request: ChatRequest) -> ValidationFailed | None:
    """Why the request's vendor-defined tools cannot run here; None when they all can."""
    return hosted_tools.refusal(request.hosted_tools, lambda tool: hosted_tools.for_anthropic(tool, UPSTREAM))


def _encode_tool(tool: Tool) -> dict[str, Any]:
    if tool.anthropic is not None:
        return tool.anthropic
    if tool.kind == "custom":
        description: str | None = custom_tools.wrapper_description(tool)
        schema = custom_tools.INPUT_SCHEMA
    else:
        description, schema = tool.description, tool.parameters or {"type": "object", "properties": {}}
    return {"name": tool.name, **({"description": description} if description else {}), "input_schema": schema}


def _encode_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice else "auto"
    encoded: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}[mode]}
    if mode == "tool" and choice is not None:
        encoded["name"] = choice.name
    if parallel is False and mode != "none":
        encoded["disable_parallel_tool_use"] = True
    return encoded


def _encode_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in request.messages:
        blocks = [block for part in message.content if (block := encode_block(part)) is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for turn in out:
        if turn["role"] == "user":
            # Tool results must open the user turn that answers the calls.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return out


def encode_block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return _encode_image(part)
    if isinstance(part, ToolUsePart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.input()}
    if isinstance(part, ToolResultPart):
        content = [
            _encode_image(inner) if isinstance(inner, ImagePart) else {"type": "text", "text": inner.text}
            for inner in part.content
            if not isinstance(inner, TextPart) or inner.text
        ]
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_use_id, "content": content}
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, ThinkingPart):
        signature = continuity.for_upstream(part, "anthropic")
        return {"type": "thinking", "thinking": part.text, "signature": signature} if signature else None
    if isinstance(part, WebSearchPart):
        return None  # its results are only valid with Anthropic's encrypted content, which is not kept
    return {"type": "redacted_thinking", "data": part.data}


def _encode_image(part: ImagePart) -> dict[str, Any]:
    inline = part.inline()
    if inline is not None:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


# ---------------------------------------------------------------- responses


def decode_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    fresh = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_creation_input_tokens)
    return {
        "input_tokens": fresh,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def decode_output_block(block: dict[str, Any]) -> OutputPart | None:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str) or not text:
            return None
        citations = [found for raw in block.get("citations") or () if (found := hosted_tools.anthropic_citation(raw))]
        return TextPart(text, citations)
    if kind == "tool_use":
        arguments = orjson.dumps(block.get("input") or {}).decode()
        return ToolUsePart(str(block.get("id") or new_id("toolu_")), str(block.get("name") or ""), arguments)
    if kind == "thinking":
        return continuity.thinking(str(block.get("thinking") or ""), block.get("signature"), "anthropic")
    if kind == "redacted_thinking":
        return RedactedThinkingPart(str(block.get("data") or ""))
    return None


def decode_stop_reason(value: Any) -> StopReason | None:
    if value is None:
        return None
    return value if value in STOP_REASONS else "end_turn"


def decode_response(body: dict[str, Any], custom_names: frozenset[str] = frozenset()) -> ChatResponse:
    """An upstream's message; `custom_names` are the custom tools whose calls to unwrap."""
    content = body.get("content")
    if not isinstance(content, list):
        raise UpstreamError("Upstream answered without content")
    parts: list[OutputPart] = []
    searches: dict[str, WebSearchPart] = {}
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "server_tool_use" and block.get("name") == hosted_tools.WEB_SEARCH_NAME:
            search = hosted_tools.web_search_call(str(block.get("id") or ""), block.get("input") or {})
            searches[search.id] = search
            parts.append(search)
        elif kind == "web_search_tool_result":
            found = searches.get(str(block.get("tool_use_id") or ""))
            if found is not None:
                hosted_tools.add_results(found, block)
        elif (part := decode_output_block(block)) is not None:
            parts.append(custom_tools.unwrap_part(part, custom_names) if isinstance(part, ToolUsePart) else part)
    return ChatResponse(
        id=str(body.get("id") or new_id("msg_")),
        model=str(body.get("model") or ""),
        content=parts,
        stop_reason=decode_stop_reason(body.get("stop_reason")),
        usage=decode_usage(body.get("usage")),
        stop_sequence=body.get("stop_sequence") if isinstance(body.get("stop_sequence"), str) else None,
    )


def encode_output_block(part: OutputPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        if not part.citations:
            return {"type": "text", "text": part.text}
        citations = [hosted_tools.anthropic_citation_block(citation) for citation in part.citations]
        return {"type": "text", "text": part.text, "citations": citations}
    if isinstance(part, ToolUsePart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.input()}
    if isinstance(part, ThinkingPart):
        signature = continuity.for_client(part.signature, part.origin, "anthropic")
        return {"type": "thinking", "thinking": part.text, "signature": signature}
    assert isinstance(part, RedactedThinkingPart)
    return {"type": "redacted_thinking", "data": part.data}


def encode_response(response: ChatResponse, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in response.content:
        if isinstance(part, WebSearchPart):
            content.extend(hosted_tools.anthropic_search_blocks(part))
        elif not isinstance(part, TextPart) or part.text:
            content.append(encode_output_block(part))
    return {
        "id": response.id if response.id.startswith("msg_") else new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": response.stop_reason or "end_turn",
        "stop_sequence": response.stop_sequence,
        "usage": encode_usage(response.usage),
    }


def count_tokens_response(tokens: int) -> dict[str, Any]:
    return {"input_tokens": tokens}
