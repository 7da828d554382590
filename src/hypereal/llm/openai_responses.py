"""OpenAI Responses API ⇄ canonical: requests and responses, both ways.

Surface side (Codex CLI, the SDK's `client.responses`): `decode_request`,
`encode_response`; upstream side (models OpenAI serves only here, such as the codex and
pro models): `encode_request`, `decode_response`. Streams are in `openai_responses_stream`.

Reasoning items carry their summary as thinking text and `encrypted_content` as the
thinking signature, so a conversation that went through an Anthropic upstream can hand
its signed thinking back on the next turn.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError, ValidationFailed
from hypereal.llm import fields
from hypereal.llm.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OutputPart,
    Part,
    RedactedThinkingPart,
    Role,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
    effort_for_budget,
    new_id,
)

# ---------------------------------------------------------------- requests


def decode_request(body: dict[str, Any]) -> ChatRequest:
    """A client's Responses body as a canonical request (without any previous response)."""
    model = fields.string(body, "model", required=True)
    assert model is not None
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
            _decode_item(fields.mapping(raw, f"input.{position}"), f"input.{position}", system, messages)
    elif raw_input is not None:
        raise fields.invalid("input", "a string or an array of input items")

    tools: list[Tool] = []
    for index, raw in enumerate(fields.array(body, "tools")):
        tool = fields.mapping(raw, f"tools.{index}")
        if tool.get("type") != "function":
            continue  # hosted tools (web search, file search, shell) run at OpenAI only
        name = fields.string(tool, "name", required=True)
        assert name is not None
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        description = tool.get("description") if isinstance(tool.get("description"), str) else None
        tools.append(Tool(name, description, fields.mapping(parameters, f"tools.{index}.parameters")))

    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    parallel = body.get("parallel_tool_calls")
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=parallel if isinstance(parallel, bool) else None,
        max_tokens=fields.integer(body, "max_output_tokens", minimum=1),
        temperature=fields.number(body, "temperature"),
        top_p=fields.number(body, "top_p"),
        response_format=_decode_text_format(body.get("text")),
        reasoning_effort=effort if isinstance(effort, str) else None,
        stream=fields.boolean(body, "stream"),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
    )


def _add(messages: list[Message], role: Role, parts: list[Part]) -> None:
    """Consecutive items of one role form one turn (reasoning, text and calls of an assistant turn)."""
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].content.extend(parts)
    else:
        messages.append(Message(role, parts))


def _decode_item(item: dict[str, Any], where: str, system: list[TextPart], messages: list[Message]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        content = item.get("content")
        if role in ("system", "developer"):
            system.extend(part for part in _content_parts(content, where) if isinstance(part, TextPart))
        elif role in ("user", "assistant"):
            _add(messages, role, list(_content_parts(content, where)))
        else:
            raise ValidationFailed(f"Invalid value for '{where}.role': {role!r}", field=f"{where}.role")
    elif kind == "function_call":
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        _add(messages, "assistant", [ToolUsePart(call_id, str(item.get("name") or ""), arguments)])
    elif kind == "function_call_output":
        output = item.get("output")
        result: list[TextPart | ImagePart] = []
        if isinstance(output, str):
            result = [TextPart(output)] if output else []
        elif isinstance(output, list):
            result = _content_parts(output, f"{where}.output")
        _add(messages, "user", [ToolResultPart(str(item.get("call_id") or ""), result)])
    elif kind == "reasoning":
        summary = item.get("summary") or []
        text = "\n\n".join(str(part.get("text") or "") for part in summary if isinstance(part, dict))
        signature = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None
        if text or signature:
            _add(messages, "assistant", [ThinkingPart(text, signature)])
    # Items of hosted tools and item references have no meaning outside OpenAI.


def _content_parts(content: Any, where: str) -> list[TextPart | ImagePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise fields.invalid(where, "a string or an array of content parts")
    parts: list[TextPart | ImagePart] = []
    for index, raw in enumerate(content):
        part = fields.mapping(raw, f"{where}.{index}")
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
                raise ValidationFailed("Images by file_id are not supported; send image_url", field=f"{where}.{index}")
            detail = part.get("detail")
            parts.append(ImagePart(url, detail if isinstance(detail, str) and detail != "auto" else None))
        else:
            raise ValidationFailed(f"Content parts of type {kind!r} are not supported", field=f"{where}.{index}.type")
    return parts


def _decode_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return ToolChoice("tool", value["name"])
    if isinstance(value, dict):
        return ToolChoice("auto")  # hosted-tool choices: let the model decide among ours
    raise fields.invalid("tool_choice", '"auto", "none", "required" or {"type": "function", "name"}')


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
    """A canonical request as a Responses body for an upstream (stateless: nothing stored there)."""
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "assistant":
            _encode_assistant(message.content, items)
        else:
            _encode_user(message.content, items)
    body: dict[str, Any] = {"model": request.model, "input": items, "store": False}
    if request.system:
        body["instructions"] = "\n\n".join(part.text for part in request.system)
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": False,
            }
            for tool in request.tools
        ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    effort = request.reasoning_effort or effort_for_budget(request.thinking_budget)
    if effort:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
    if request.response_format:
        body["text"] = {"format": _encode_text_format(request.response_format)}
    if request.user:
        body["user"] = request.user
    if request.stream:
        body["stream"] = True
    return body


def _encode_text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    if response_format.get("type") == "json_schema":
        return {"type": "json_schema", **(response_format.get("json_schema") or {})}
    return {"type": str(response_format.get("type") or "text")}


def _encode_user(parts: list[Part], items: list[dict[str, Any]]) -> None:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ToolResultPart):
            items.append({"type": "function_call_output", "call_id": part.tool_use_id, "output": part.text()})
        elif isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"})
    if content:
        items.append({"type": "message", "role": "user", "content": content})


def _encode_assistant(parts: list[Part], items: list[dict[str, Any]]) -> None:
    # Thinking is not sent back: OpenAI accepts only reasoning items it produced itself.
    for part in parts:
        if isinstance(part, TextPart) and part.text:
            items.append(
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": part.text}]}
            )
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
        return [part for part in _content_parts(item.get("content"), "output") if isinstance(part, TextPart)]
    if kind == "function_call":
        call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
        return [ToolUsePart(call_id, str(item.get("name") or ""), str(item.get("arguments") or ""))]
    if kind == "reasoning":
        summary = item.get("summary") or []
        text = "\n\n".join(str(part.get("text") or "") for part in summary if isinstance(part, dict))
        signature = item.get("encrypted_content")
        return [ThinkingPart(text, signature if isinstance(signature, str) else None)]
    return []


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


def output_items(content: list[OutputPart]) -> list[dict[str, Any]]:
    """Output parts as Responses output items: consecutive text parts share one message item."""
    items: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if not part.text:
                continue
            text = {"type": "output_text", "text": part.text, "annotations": [], "logprobs": []}
            if items and items[-1]["type"] == "message":
                items[-1]["content"].append(text)
            else:
                items.append(message_item(new_id("msg_"), [text]))
        elif isinstance(part, ToolUsePart):
            items.append(function_call_item(new_id("fc_"), part))
        elif isinstance(part, ThinkingPart):
            items.append(reasoning_item(new_id("rs_"), part.text, part.signature))
        elif isinstance(part, RedactedThinkingPart):
            items.append(reasoning_item(new_id("rs_"), "", part.data))
    return items


def message_item(item_id: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, part: ToolUsePart, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": part.id,
        "name": part.name,
        "arguments": part.arguments,
    }


def reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    return item


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
        output=output_items(response.content),
        usage=response.usage,
        created_at=response.created,
        stop_reason=response.stop_reason,
    )
