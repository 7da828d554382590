"""OpenAI Responses API ⇄ canonical: requests and responses, both ways.

Surface side (Codex CLI, the SDK's `client.responses`): `decode_request`,
`encode_response`; upstream side (models OpenAI serves only here, such as the codex and
pro models): `encode_request`, `decode_response`. Streams are in `openai_responses_stream`.

Reasoning items carry their summary as thinking text and `encrypted_content` as the
thinking's token, tagged when another vendor made it (`continuity`), so a conversation that
went through an Anthropic upstream can hand its signed thinking back on the next turn.

Codex's tools: custom tools and their `custom_tool_call(_output)` items map to custom
tools and calls; `local_shell` to a function of that name whose arguments are the action;
every other non-function tool is a hosted one, kept for the upstream codec to map or
drop; the tools of a `namespace` are offered as functions of their own (`namespace_tools`),
and a call of one goes back to the client under its own name and namespace. Output items
are built in `openai_responses_items`.

What the canonical form cannot hold follows `tolerance`: the instructions and the developer
or system messages before the first turn are the system prompt, later ones stay in their
place (as developer messages on the way out); input items of hosted tools, item references,
and roles, items or content parts not known here are dropped and reported; file and audio
parts are input the model must see, refused with a 400. The fields the decoder does not
read (`store`, `include`, `prompt_cache_key`, `client_metadata`, `text.verbosity`, …) go to
an upstream of this format as they came, some to Chat Completions (`tolerance.OPENAI_ALIKE`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError, ValidationFailed
from hypereal.llm import continuity, custom_tools, fields, hosted_tools, namespace_tools, tolerance
from hypereal.llm.openai_chat import encode_user
from hypereal.llm.openai_responses_items import LOCAL_SHELL, LOCAL_SHELL_TOOL, ClientTools, output_items
from hypereal.llm.types import (
    ChatRequest,
    ChatResponse,
    Citation,
    HostedTool,
    ImagePart,
    Message,
    OutputPart,
    Part,
    RedactedThinkingPart,
    Role,
    StopReason,
    TextPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
    WebSearchPart,
    new_id,
)

UPSTREAM = "OpenAI Responses, reached through translation"
WEB_SEARCH_SOURCES = "web_search_call.action.sources"

# ---------------------------------------------------------------- requests


KNOWN_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "previous_response_id",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "stream",
        "user",
    }
)
"""The fields the decoder (or the surface, for `previous_response_id`) reads; the others,
and the settings of `text` other than its format, travel as extras (`tolerance.carry`)."""
UNSEEN_PARTS = frozenset({"input_file", "input_audio"})
"""Content parts that hold input the model must see, which no translation carries."""
CALL_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output"})


def decode_request(body: dict[str, Any]) -> ChatRequest:
    """A client's Responses body as a canonical request (without any previous response).

    The instructions and the system or developer messages before the first turn are the
    system prompt; those after it stay where they are, as system messages.
    """
    model = fields.string(body, "model", required=True)
    assert model is not None
    dropped: list[str] = []
    system: list[TextPart] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(TextPart(instructions))
    messages: list[Message] = []
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        if raw_input:
            messages.append(Message("user", [TextPart(raw_input)]))
    elif isinstance(raw_input, list):
        for position, raw in enumerate(raw_input):
            where = f"input.{position}"
            _decode_item(fields.mapping(raw, where), where, system, messages, dropped)
    elif raw_input is not None:
        raise fields.invalid("input", "a string or an array of input items")

    tools: list[Tool] = []
    hosted: list[HostedTool] = []
    for index, raw in enumerate(fields.array(body, "tools")):
        where = f"tools.{index}"
        tool = fields.mapping(raw, where)
        kind = tool.get("type")
        if kind in ("function", "custom"):
            tools.append(_decode_tool(tool, where))
        elif kind == LOCAL_SHELL:
            tools.append(LOCAL_SHELL_TOOL)
        elif kind == namespace_tools.NAMESPACE:
            for inner, inner_where in namespace_tools.flattened(tool, where):
                if inner.get("type") in ("function", "custom"):
                    tools.append(_decode_tool(inner, inner_where))
                else:
                    tolerance.drop(dropped, inner_where, str(inner.get("type")))
        elif isinstance(kind, str) and kind:
            hosted.append(HostedTool(tool, where))
        else:
            raise fields.invalid(f"{where}.type", "a tool type")

    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    parallel = body.get("parallel_tool_calls")
    extras = tolerance.extras(body, KNOWN_FIELDS)
    text = body.get("text")
    for key, value in text.items() if isinstance(text, dict) else ():
        if key != "format":
            extras[f"text.{key}"] = value
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        hosted_tools=hosted,
        tool_choice=_decode_tool_choice(body.get("tool_choice"), dropped),
        parallel_tool_calls=parallel if isinstance(parallel, bool) else None,
        max_tokens=fields.integer(body, "max_output_tokens", minimum=1),
        temperature=fields.number(body, "temperature"),
        top_p=fields.number(body, "top_p"),
        response_format=_decode_text_format(text),
        reasoning_effort=effort if isinstance(effort, str) else None,
        stream=fields.boolean(body, "stream"),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        surface="openai-responses",
        extras=extras,
        dropped=dropped,
    )


def _decode_tool(tool: dict[str, Any], where: str) -> Tool:
    name = fields.string(tool, "name", required=True)
    assert name is not None
    description = tool.get("description") if isinstance(tool.get("description"), str) else None
    if tool["type"] == "custom":
        fmt = tool.get("format")
        return Tool(name, description, kind="custom", format=fields.mapping(fmt, f"{where}.format") if fmt else None)
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    return Tool(name, description, fields.mapping(parameters, f"{where}.parameters"))


def _add(messages: list[Message], role: Role, parts: list[Part]) -> None:
    """Consecutive items of one role form one turn (reasoning, text and calls of an assistant turn)."""
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].content.extend(parts)
    else:
        messages.append(Message(role, parts))


def _decode_item(
    item: dict[str, Any], where: str, system: list[TextPart], messages: list[Message], dropped: list[str]
) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        content = item.get("content")
        if role in ("system", "developer"):
            parts = [part for part in _content_parts(content, where, dropped) if isinstance(part, TextPart)]
            if messages:
                _add(messages, "system", list[Part](parts))
            else:
                system.extend(parts)
        elif role in ("user", "assistant"):
            _add(messages, role, list(_content_parts(content, where, dropped)))
        else:
            tolerance.drop(dropped, where, str(role))
    elif kind == "function_call":
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        _add(messages, "assistant", [ToolUsePart(call_id, namespace_tools.call_name(item), arguments)])
    elif kind == "custom_tool_call":
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        raw_input = item.get("input")
        if not isinstance(raw_input, str):
            raise fields.invalid(f"{where}.input", "a string")
        _add(messages, "assistant", [ToolUsePart(call_id, namespace_tools.call_name(item), raw_input, custom=True)])
    elif kind == "local_shell_call":
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        action = fields.mapping(item.get("action"), f"{where}.action")
        arguments = orjson.dumps({key: value for key, value in action.items() if key != "type"}).decode()
        _add(messages, "assistant", [ToolUsePart(call_id, LOCAL_SHELL, arguments)])
    elif kind in CALL_OUTPUTS:
        # A local shell call's output names the call by `id` in OpenAI's schema.
        call_id = item.get("call_id") or (item.get("id") if kind == "local_shell_call_output" else None) or ""
        _add(messages, "user", [ToolResultPart(str(call_id), _output_parts(item.get("output"), where, dropped))])
    elif kind == "reasoning":
        summary = item.get("summary") or []
        text = "\n\n".join(str(part.get("text") or "") for part in summary if isinstance(part, dict))
        token = item.get("encrypted_content")
        if text or isinstance(token, str):
            _add(messages, "assistant", [_reasoning_part(text, token)])
    else:
        # Items of hosted tools (a past web search among them), item references and kinds not
        # known here have no meaning outside OpenAI; what a search found lives on in the text.
        tolerance.drop(dropped, where, str(kind))


def _reasoning_part(text: str, token: Any) -> Part:
    part = continuity.thinking(text, token, "openai")
    if part.origin == "anthropic" and part.signature and part.signature.startswith(continuity.REDACTED):
        return RedactedThinkingPart(part.signature.removeprefix(continuity.REDACTED))
    return part


def _output_parts(output: Any, where: str, dropped: list[str]) -> list[TextPart | ImagePart]:
    if isinstance(output, str):
        return [TextPart(output)] if output else []
    if isinstance(output, list):
        return _content_parts(output, f"{where}.output", dropped)
    return []


def _content_parts(content: Any, where: str, dropped: list[str]) -> list[TextPart | ImagePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise fields.invalid(where, "a string or an array of content parts")
    parts: list[TextPart | ImagePart] = []
    for index, raw in enumerate(content):
        here = f"{where}.{index}"
        part = fields.mapping(raw, here)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append(TextPart(text))
        elif kind == "refusal":
            if isinstance(part.get("refusal"), str) and part["refusal"]:
                parts.append(TextPart(part["refusal"]))
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise ValidationFailed("Images by file_id are not supported; send image_url", field=here)
            detail = part.get("detail")
            parts.append(ImagePart(url, detail if isinstance(detail, str) and detail != "auto" else None))
        elif kind in UNSEEN_PARTS:
            raise tolerance.cannot_take(str(kind), f"{here}.type")
        else:
            tolerance.drop(dropped, here, str(kind))
    return parts


def _decode_tool_choice(value: Any, dropped: list[str]) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") in ("function", "custom") and isinstance(value.get("name"), str):
        return ToolChoice("tool", namespace_tools.call_name(value))
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        # A hosted tool's type: the routes that run it let the model decide among ours.
        kind = value["type"]
        return ToolChoice("auto", hosted=None if kind == "allowed_tools" else kind)
    tolerance.drop(dropped, "tool_choice")
    return None


def _decode_text_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict) or not isinstance(text.get("format"), dict):
        return None
    fmt = text["format"]
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return None


def encode_request(request: ChatRequest) -> dict[str, Any]:
    """A canonical request as a Responses body for an upstream (stateless: nothing stored there).

    Of the hosted tools only web search goes along: the outputs of the others could not be
    carried back through the canonical form. A search's answer lists the pages it found only
    when asked to, and other wire formats show them (Anthropic's search results), so it is asked.
    """
    items: list[dict[str, Any]] = []
    custom_calls = {
        part.id
        for message in request.messages
        for part in message.content
        if isinstance(part, ToolUsePart) and part.custom
    }
    for message in request.messages:
        if message.role == "assistant":
            _encode_assistant(message.content, items)
        elif message.role == "system":
            texts = [part.text for part in message.content if isinstance(part, TextPart)]
            content = [{"type": "input_text", "text": text} for text in texts]
            items.append({"type": "message", "role": "developer", "content": content})
        else:
            _encode_user(message.content, items, custom_calls)
    body: dict[str, Any] = {"model": request.model, "input": items, "store": False}
    if request.system:
        body["instructions"] = "\n\n".join(part.text for part in request.system)
    tools = [_encode_tool(tool) for tool in request.tools]
    searches = tolerance.hosted(request, lambda hosted: hosted_tools.for_responses(hosted, UPSTREAM))
    if searches:
        tools += searches
        body["include"] = [WEB_SEARCH_SOURCES]
    if tools:
        body["tools"] = tools
        if request.tool_choice is not None:
            choice = request.tool_choice
            kind = "custom" if choice.name in custom_tools.custom_tool_names(request) else "function"
            body["tool_choice"] = {"type": kind, "name": choice.name} if choice.mode == "tool" else choice.mode
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    effort = request.effort()
    if effort:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
    if request.response_format:
        body["text"] = {"format": _encode_text_format(request.response_format)}
    encode_user(body, request)
    if request.stream:
        body["stream"] = True
    return tolerance.carry(body, request, "openai-responses")


def refusal(request: ChatRequest) -> ValidationFailed | None:
    """Why the request's hosted tools cannot run through translation; None when they all can."""
    return hosted_tools.refusal(request.hosted_tools, lambda tool: hosted_tools.for_responses(tool, UPSTREAM))


def _encode_tool(tool: Tool) -> dict[str, Any]:
    if tool.kind == "custom":
        custom: dict[str, Any] = {"type": "custom", "name": tool.name}
        if tool.description:
            custom["description"] = tool.description
        if tool.format:
            custom["format"] = tool.format
        return custom
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": False,
    }


def _encode_text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    if response_format.get("type") == "json_schema":
        return {"type": "json_schema", **(response_format.get("json_schema") or {})}
    return {"type": str(response_format.get("type") or "text")}


def _encode_user(parts: list[Part], items: list[dict[str, Any]], custom_calls: set[str]) -> None:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ToolResultPart):
            kind = "custom_tool_call_output" if part.tool_use_id in custom_calls else "function_call_output"
            items.append({"type": kind, "call_id": part.tool_use_id, "output": part.text()})
        elif isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"})
    if content:
        items.append({"type": "message", "role": "user", "content": content})


def _encode_assistant(parts: list[Part], items: list[dict[str, Any]]) -> None:
    # Thinking is not sent back: OpenAI accepts only reasoning items it produced itself, each
    # under its item id, which the canonical form does not keep.
    for part in parts:
        if isinstance(part, TextPart) and part.text:
            items.append(
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": part.text}]}
            )
        elif isinstance(part, ToolUsePart) and part.custom:
            items.append({"type": "custom_tool_call", "call_id": part.id, "name": part.name, "input": part.arguments})
        elif isinstance(part, ToolUsePart):
            items.append(
                {"type": "function_call", "call_id": part.id, "name": part.name, "arguments": part.arguments or "{}"}
            )


# ---------------------------------------------------------------- responses


def decode_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=int((raw.get("input_tokens_details") or {}).get("cached_tokens") or 0),
        reasoning_tokens=int((raw.get("output_tokens_details") or {}).get("reasoning_tokens") or 0),
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def decode_output_item(item: dict[str, Any]) -> list[OutputPart]:
    kind = item.get("type")
    if kind == "message":
        texts = [_output_text(part) for part in item.get("content") or () if isinstance(part, dict)]
        return [text for text in texts if text.text]
    if kind in ("function_call", "custom_tool_call"):
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        name = namespace_tools.call_name(item)
        if kind == "custom_tool_call":
            return [ToolUsePart(call_id, name, str(item.get("input") or ""), custom=True)]
        return [ToolUsePart(call_id, name, str(item.get("arguments") or ""))]
    if kind == "web_search_call":
        return [web_search_of(item)]
    if kind == "reasoning":
        summary = item.get("summary") or []
        text = "\n\n".join(str(part.get("text") or "") for part in summary if isinstance(part, dict))
        token = item.get("encrypted_content")
        if not text and not isinstance(token, str):
            return []  # reasoning kept hidden at OpenAI: nothing to show or send back
        return [continuity.thinking(text, token, "openai")]
    return []


def _output_text(part: dict[str, Any]) -> TextPart:
    text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
    return TextPart(str(text or ""), [found for raw in part.get("annotations") or () if (found := citation_of(raw))])


def citation_of(annotation: Any) -> Citation | None:
    if not isinstance(annotation, dict) or annotation.get("type") != "url_citation":
        return None
    return Citation(str(annotation.get("url") or ""), str(annotation.get("title") or ""))


def web_search_of(item: dict[str, Any]) -> WebSearchPart:
    action = item.get("action")
    if not isinstance(action, dict):
        action = {}
    sources = [
        Citation(str(source["url"]))
        for source in action.get("sources") or ()
        if isinstance(source, dict) and isinstance(source.get("url"), str)
    ]
    query = action.get("query")
    failed = item.get("status") == "failed"
    return WebSearchPart(str(item.get("id") or new_id("ws_")), query if isinstance(query, str) else "", sources, failed)


def stop_reason_of(status: Any, incomplete: Any, content: list[OutputPart]) -> StopReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "refusal" if reason == "content_filter" else "max_tokens"
    if any(isinstance(part, ToolUsePart) for part in content):
        return "tool_use"
    return "end_turn"


def decode_response(body: dict[str, Any]) -> ChatResponse:
    output = body.get("output")
    if not isinstance(output, list):
        raise UpstreamError("Upstream answered without output")
    content = [part for item in output if isinstance(item, dict) for part in decode_output_item(item)]
    return ChatResponse(
        id=str(body.get("id") or new_id("resp_")),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=stop_reason_of(body.get("status"), body.get("incomplete_details"), content),
        usage=decode_usage(body.get("usage")),
        created=int(body.get("created_at") or time.time()),
    )


def response_object(
    response_id: str,
    model: str,
    request: dict[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    created_at: int,
    stop_reason: StopReason | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `response` object, echoing the request's settings as OpenAI does."""
    incomplete = None
    if status == "completed" and stop_reason == "max_tokens":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": (reasoning or {}).get("summary")},
        "store": request.get("store", True),
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation", "disabled"),
        "usage": encode_usage(usage) if usage is not None else None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def encode_response(
    response: ChatResponse, model: str, request: dict[str, Any], response_id: str | None = None
) -> dict[str, Any]:
    return response_object(
        response_id or new_id("resp_"),
        model,
        request,
        status="completed",
        output=output_items(response.content, ClientTools.of(request)),
        usage=response.usage,
        created_at=response.created,
        stop_reason=response.stop_reason,
    )
