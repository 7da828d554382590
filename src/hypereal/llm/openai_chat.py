"""OpenAI Chat Completions ⇄ canonical: requests, responses and stream chunks, both ways.

Surface side (our clients): `decode_request`, `encode_response`, `StreamEncoder`.
Upstream side (OpenAI and compatible servers): `encode_request`, `decode_response`,
`StreamDecoder`.

Thinking travels as `reasoning_content`, the field OpenAI-compatible reasoning servers use;
OpenAI's own models never show their reasoning, so nothing is lost there.

Custom (freeform) tools go to OpenAI as they are; servers that may not know them
(`native_custom=False`) are offered them wrapped as functions, and the decoders, told
their names, unwrap the calls. Web search is `web_search_options`, which a client's
request carries as OpenAI's web search tool and only search models take (`searches=True`);
no other hosted tool runs behind Chat Completions. A searched answer's `url_citation`
annotations are its text's citations.

What the canonical form cannot hold follows `tolerance`: system and developer messages
before the first turn are the system prompt, later ones stay in their place; a role, a
content part or a `tool_choice` not known here is dropped and reported, a tool type other
than function and custom is one of OpenAI's hosted tools; audio and file parts are input
the model must see, refused with a 400 when the request is translated. The fields the
decoder does not read go to an upstream of this format as they came, some to the Responses
API (`tolerance.OPENAI_ALIKE`). An Anthropic client's end user id goes as `safety_identifier`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hypereal.errors import UpstreamError, ValidationFailed
from hypereal.llm import continuity, custom_tools, fields, hosted_tools, tolerance
from hypereal.llm.openai_chat_tools import (
    decode_function,
    decode_tool,
    decode_tool_choice,
    encode_tool,
    encode_tool_call,
    encode_tool_choice,
)
from hypereal.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Citation,
    HostedTool,
    ImagePart,
    Message,
    OutputPart,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolResultPart,
    ToolUsePart,
    Usage,
    new_id,
)

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
MAX_CHOICES = 128
"""OpenAI's limit on `n`, kept for upstreams that make one call per choice too."""
SAFETY_IDENTIFIER_CHARS = 128
UPSTREAM = "Chat Completions"


# ---------------------------------------------------------------- requests


def choices_of(body: dict[str, Any]) -> int:
    """The `n` of a body that may be forwarded unchecked: 1 unless it is a plausible count."""
    value = body.get("n")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


KNOWN_FIELDS = (
    frozenset({"model", "messages", "tools", "functions", "tool_choice", "function_call", "parallel_tool_calls"})
    | {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "response_format"}
    | {"reasoning_effort", "stream", "stream_options", "user", "web_search_options"}
)
"""The fields the decoder (or the surface, for `stream_options`) reads; the others travel as
extras (`tolerance.carry`)."""
UNSEEN_PARTS = frozenset({"input_audio", "file"})
"""Content parts that hold input the model must see, which no translation carries."""


def decode_request(body: dict[str, Any]) -> ChatRequest:
    """A client's Chat Completions body as a canonical request.

    System and developer messages before the first turn are the system prompt; those after
    it stay where they are, as system messages.
    """
    model = fields.string(body, "model", required=True)
    assert model is not None
    dropped: list[str] = []
    system: list[TextPart] = []
    messages: list[Message] = []
    for position, raw in enumerate(fields.array(body, "messages", required=True)):
        message = fields.mapping(raw, f"messages.{position}")
        role = message.get("role")
        where = f"messages.{position}.content"
        if role in ("system", "developer"):
            parts = _text_parts(message.get("content"), where)
            if messages:
                _append(messages, Message("system", list[Part](parts)))
            else:
                system.extend(parts)
        elif role == "user":
            _append(messages, Message("user", list[Part](_user_parts(message.get("content"), where, dropped))))
        elif role == "assistant":
            _append(messages, Message("assistant", _assistant_parts(message, where)))
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id") or message.get("name") or ""
            inner = _user_parts(message.get("content"), where, dropped, allow_empty=True)
            _append(messages, Message("user", [ToolResultPart(str(call_id), list(inner))]))
        else:
            tolerance.drop(dropped, f"messages.{position}", str(role))

    declared = [decode_tool(raw, f"tools.{i}") for i, raw in enumerate(fields.array(body, "tools"))]
    declared += [decode_function(raw, f"functions.{i}") for i, raw in enumerate(fields.array(body, "functions"))]
    tools = [tool for tool in declared if isinstance(tool, Tool)]
    hosted = [tool for tool in declared if isinstance(tool, HostedTool)]
    max_tokens = fields.integer(body, "max_completion_tokens", minimum=1) or fields.integer(
        body, "max_tokens", minimum=1
    )
    response_format = body.get("response_format")
    search = body.get("web_search_options")
    if search is not None:
        hosted.append(hosted_tools.from_chat_web_search_options(search))
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        hosted_tools=hosted,
        tool_choice=decode_tool_choice(body.get("tool_choice", body.get("function_call")), dropped),
        parallel_tool_calls=parallel if isinstance(parallel := body.get("parallel_tool_calls"), bool) else None,
        max_tokens=max_tokens,
        temperature=fields.number(body, "temperature"),
        top_p=fields.number(body, "top_p"),
        stop=fields.stop_list(body.get("stop"), "stop"),
        n=fields.integer(body, "n", minimum=1, maximum=MAX_CHOICES) or 1,
        response_format=fields.mapping(response_format, "response_format") if response_format is not None else None,
        reasoning_effort=fields.string(body, "reasoning_effort"),
        stream=fields.boolean(body, "stream"),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        surface="openai-chat",
        extras=tolerance.extras(body, KNOWN_FIELDS),
        dropped=dropped,
    )


def _append(messages: list[Message], message: Message) -> None:
    """Tool results join the user turn next to them, as Anthropic's format requires."""
    if messages and message.role == "user" and messages[-1].role == "user":
        previous = messages[-1]
        if any(isinstance(p, ToolResultPart) for p in previous.content) or any(
            isinstance(p, ToolResultPart) for p in message.content
        ):
            previous.content.extend(message.content)
            return
    messages.append(message)


def _text_parts(content: Any, where: str) -> list[TextPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if isinstance(content, list):
        parts: list[TextPart] = []
        for item in content:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                if item["text"]:
                    parts.append(TextPart(item["text"]))
            elif isinstance(item, str):
                parts.append(TextPart(item))
        return parts
    raise fields.invalid(where, "a string or an array of content parts")


def _user_parts(content: Any, where: str, dropped: list[str], allow_empty: bool = False) -> list[TextPart | ImagePart]:
    if content is None:
        if allow_empty:
            return []
        raise fields.missing(where)
    if isinstance(content, str):
        return [TextPart(content)] if content or not allow_empty else []
    if not isinstance(content, list):
        raise fields.invalid(where, "a string or an array of content parts")
    parts: list[TextPart | ImagePart] = []
    for index, item in enumerate(content):
        if not isinstance(item, dict):
            raise fields.invalid(f"{where}.{index}", "a content part object")
        kind = item.get("type")
        if kind == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise fields.invalid(f"{where}.{index}.text", "a string")
            if text:
                parts.append(TextPart(text))
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise fields.invalid(f"{where}.{index}.image_url", "an object with a url")
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append(ImagePart(url, detail if isinstance(detail, str) else None))
        elif kind in UNSEEN_PARTS:
            raise tolerance.cannot_take(str(kind), f"{where}.{index}.type")
        else:
            tolerance.drop(dropped, f"{where}.{index}", str(kind))
    return parts


def _assistant_parts(message: dict[str, Any], where: str) -> list[Part]:
    parts: list[Part] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        # Chat Completions has no token of its own: one sent back signs thinking (Anthropic's)
        # unless our tag names another vendor.
        parts.append(continuity.thinking(reasoning, message.get("reasoning_signature"), "anthropic"))
    parts.extend(_text_parts(message.get("content"), where))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(refusal))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise fields.invalid(f"{where}.tool_calls", "an array of tool calls")
    for index, call in enumerate(calls):
        custom = call.get("custom") if isinstance(call, dict) else None
        if isinstance(custom, dict) and isinstance(custom.get("name"), str):
            call_id = str(call.get("id") or new_id("call_"))
            parts.append(ToolUsePart(call_id, custom["name"], str(custom.get("input") or ""), custom=True))
            continue
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise fields.invalid(f"{where}.tool_calls.{index}", "a function or custom tool call with a name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        parts.append(ToolUsePart(str(call.get("id") or new_id("call_")), function["name"], arguments))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        parts.append(ToolUsePart(legacy["name"], legacy["name"], str(legacy.get("arguments") or "")))
    return parts


def refusal(request: ChatRequest, *, searches: bool = False) -> ValidationFailed | None:
    """Why the request's hosted tools cannot all run here (`searches`: at a search model); None when they can."""
    return hosted_tools.refusal(
        request.hosted_tools, lambda tool: hosted_tools.for_chat(tool, UPSTREAM, searches=searches)
    )


def encode_user(body: dict[str, Any], request: ChatRequest) -> None:
    """The end user's id in an OpenAI body: an OpenAI client's `user` as it came; Anthropic's
    `metadata.user_id`, an opaque id of the end user, as `safety_identifier`, which OpenAI
    documents as such an id of at most 128 characters
    (https://platform.openai.com/docs/api-reference/responses/create), or dropped when longer."""
    if request.user is None:
        return
    if request.surface != "anthropic-messages":
        body["user"] = request.user
    elif len(request.user) <= SAFETY_IDENTIFIER_CHARS:
        body["safety_identifier"] = request.user
    else:
        tolerance.drop(request.dropped, "metadata.user_id")


def encode_request(
    request: ChatRequest,
    *,
    max_tokens_field: str = "max_completion_tokens",
    native_custom: bool = True,
    searches: bool = False,
) -> dict[str, Any]:
    """A canonical request as a Chat Completions body for an upstream.

    `native_custom` False offers custom tools as functions, for servers that may not know them;
    `searches` True says the model is a search model, which takes `web_search_options`.
    """
    searching = tolerance.hosted(request, lambda tool: hosted_tools.for_chat(tool, UPSTREAM, searches=searches))
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append(_system_message(request.system))
    for message in request.messages:
        if message.role == "assistant":
            messages.append(_encode_assistant(message.content, native_custom))
        elif message.role == "system":
            messages.append(_system_message(message.content))
        else:
            messages.extend(_encode_user(message.content))
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        body["tools"] = [encode_tool(tool, native_custom) for tool in request.tools]
        if request.tool_choice is not None:
            custom = native_custom and request.tool_choice.name in custom_tools.custom_tool_names(request)
            body["tool_choice"] = encode_tool_choice(request.tool_choice, custom=custom)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    for name in ("temperature", "top_p", "response_format"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    encode_user(body, request)
    if request.stop:
        body["stop"] = request.stop
    if request.n != 1:
        body["n"] = request.n
    effort = request.effort()
    if effort:
        body["reasoning_effort"] = effort
    if searching:
        body["web_search_options"] = {key: value for options in searching for key, value in options.items()}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return tolerance.carry(body, request, "openai-chat")


def _system_message(parts: list[Part] | list[TextPart]) -> dict[str, Any]:
    return {"role": "system", "content": "\n\n".join(part.text for part in parts if isinstance(part, TextPart))}


def _encode_assistant(parts: list[Part], native_custom: bool) -> dict[str, Any]:
    text = "".join(part.text for part in parts if isinstance(part, TextPart))
    calls = [encode_tool_call(part, native_custom) for part in parts if isinstance(part, ToolUsePart)]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _encode_user(parts: list[Part]) -> list[dict[str, Any]]:
    """Tool results become `tool` messages; what else the turn holds follows as a user message."""
    out: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ToolResultPart):
            text = part.text()
            if part.is_error and not text.startswith("Error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": part.tool_use_id, "content": text})
            rest.extend(_encode_content_part(inner) for inner in part.content if isinstance(inner, ImagePart))
        elif isinstance(part, TextPart | ImagePart):
            rest.append(_encode_content_part(part))
    if rest:
        if len(rest) == 1 and rest[0]["type"] == "text":
            out.append({"role": "user", "content": rest[0]["text"]})
        else:
            out.append({"role": "user", "content": rest})
    return out


def _encode_content_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


# ---------------------------------------------------------------- responses


def decode_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _decode_choice(choice: dict[str, Any], custom_names: frozenset[str]) -> Choice:
    message = choice.get("message") or {}
    content: list[OutputPart] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(ThinkingPart(reasoning))
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append(TextPart(text, citations_of(message.get("annotations"))))
    refused = message.get("refusal")
    if isinstance(refused, str) and refused:
        content.append(TextPart(refused))
    for call in message.get("tool_calls") or []:
        call_id = str(call.get("id") or new_id("call_"))
        custom = call.get("custom")
        if isinstance(custom, dict):
            content.append(ToolUsePart(call_id, str(custom.get("name") or ""), str(custom.get("input") or ""), True))
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        part = ToolUsePart(call_id, str(function.get("name") or ""), arguments)
        content.append(custom_tools.unwrap_part(part, custom_names))
    finish = choice.get("finish_reason")
    return Choice(content, STOP_REASONS.get(finish, "end_turn") if finish else None)


def citations_of(annotations: Any) -> list[Citation]:
    """The pages `url_citation` annotations name; where in the text they are is not kept."""
    citations: list[Citation] = []
    for annotation in annotations if isinstance(annotations, list) else ():
        if not isinstance(annotation, dict) or annotation.get("type") != "url_citation":
            continue
        cited = annotation.get("url_citation")
        if isinstance(cited, dict) and isinstance(cited.get("url"), str):
            citations.append(Citation(cited["url"], str(cited.get("title") or "")))
    return citations


def decode_response(body: dict[str, Any], custom_names: frozenset[str] = frozenset()) -> ChatResponse:
    """An upstream's completion; `custom_names` are the custom tools offered as functions, to unwrap."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamError("Upstream answered without choices")
    decoded = [_decode_choice(choice, custom_names) for choice in choices]
    first = decoded[0]
    return ChatResponse(
        id=str(body.get("id") or new_id("chatcmpl-")),
        model=str(body.get("model") or ""),
        content=first.content,
        stop_reason=first.stop_reason,
        usage=decode_usage(body.get("usage")),
        created=int(body.get("created") or time.time()),
        extra_choices=decoded[1:],
    )


def _encode_message(content: list[OutputPart]) -> dict[str, Any]:
    texts = [part for part in content if isinstance(part, TextPart)]
    text = "".join(part.text for part in texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    thinking = "".join(part.text for part in content if isinstance(part, ThinkingPart))
    if thinking:
        message["reasoning_content"] = thinking
    calls = [encode_tool_call(part) for part in content if isinstance(part, ToolUsePart)]
    if calls:
        message["tool_calls"] = calls
    annotations = _annotations(texts)
    if annotations:
        message["annotations"] = annotations
    return message


def _annotations(texts: list[TextPart]) -> list[dict[str, Any]]:
    """Citations as url_citation annotations, each spanning the text it came with in the joined content."""
    annotations: list[dict[str, Any]] = []
    start = 0
    for part in texts:
        end = start + len(part.text)
        annotations.extend(url_citation(citation, start, end) for citation in part.citations)
        start = end
    return annotations


def url_citation(citation: Citation, start: int, end: int) -> dict[str, Any]:
    cited = {"start_index": start, "end_index": end, "title": citation.title, "url": citation.url}
    return {"type": "url_citation", "url_citation": cited}


def encode_response(response: ChatResponse, model: str, **extra: Any) -> dict[str, Any]:
    """A canonical response as a Chat Completions body; `extra` adds top-level fields (creditsUsed)."""
    choices = [Choice(response.content, response.stop_reason, response.stop_sequence), *response.extra_choices]
    return {
        "id": response.id if response.id.startswith("chatcmpl") else new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": response.created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": _encode_message(choice.content),
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(choice.stop_reason or "end_turn", "stop"),
            }
            for index, choice in enumerate(choices)
        ],
        "usage": encode_usage(response.usage),
        "system_fingerprint": None,
        **extra,
    }
