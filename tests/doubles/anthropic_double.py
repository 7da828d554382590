"""Anthropic's Messages API on 127.0.0.1, as Anthropic publishes it.

    POST /v1/messages   x-api-key + anthropic-version headers; `stream` for the event stream:
                        message_start, ping, content_block_start/delta/stop (text_delta,
                        input_json_delta, thinking_delta, signature_delta), message_delta
                        with usage, message_stop

Answers are deterministic: "Hello from Claude: <last user text>"; with `thinking` enabled a
signed thinking block comes first; when the last user text scripts a call, `call <tool>
with <JSON object>` naming an offered tool (`hypereal.providers.echo.scripted_call`), the
answer is a `tool_use` of exactly that tool with exactly those arguments; otherwise when
tools are offered and the text says "call" (or `tool_choice` demands it) the answer is a
`tool_use` of the first (or named) tool with `{"city": "Paris"}`, its JSON split over
several deltas; a tool whose schema is
the one string `input` (a custom tool offered as a function) gets `{"input": PATCH}`
instead, its JSON cut into many small pieces. When the `web_search_20250305` server tool
is offered and the text says "search", the answer is a search as Anthropic's web search
tool gives it: `server_tool_use`, `web_search_tool_result`, then text citing a result
(`citations_delta` when streaming). After a tool result the text reports it. With a
`temperature` above 0 a text answer varies as sampling would: it ends with " #k", k
counting the double's answers. Usage: input 11 tokens (3 of them read from cache),
output = deltas.

As Anthropic does, a request is refused (400) when an assistant turn holds a thinking block
whose signature, a search result whose `encrypted_content` or a citation whose
`encrypted_index` the double did not issue, or, with thinking enabled, when the last
assistant turn calls tools without opening with a thinking block.

Faults: `fail_next(status, type)`; `cut_after(n)` closes the next stream after n events;
`error_after(n)` sends an `overloaded_error` event after n events. `requests` records bodies.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from aiohttp import web

from hypereal.providers.echo import scripted_call
from tests.doubles.openai_double import Received

PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n-print('hi')\n"
    '+print("héllo, \\"wörld\\"\t✓ 🌍")\n*** End Patch\n'
)
"""The input of every custom-tool call: quotes, a backslash, a tab, accents and a non-BMP character."""
SEARCH_ID = "srvtoolu_double_1"
SEARCH_RESULTS = [
    {
        "type": "web_search_result",
        "url": "https://www.python.org/downloads/",
        "title": "Download Python",
        "encrypted_content": "EqgfCioIARgBIiQ3YTAw",
        "page_age": "2 days ago",
    },
    {
        "type": "web_search_result",
        "url": "https://docs.python.org/3/whatsnew/",
        "title": "What's New in Python",
        "encrypted_content": "EqgfCioIARgBIiQ3YTAx",
        "page_age": None,
    },
]
SEARCH_ANSWER = "The latest Python release is listed on the downloads page."
INPUT_TOKENS = 8
CACHE_READ_TOKENS = 3
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
ENCRYPTED_INDEX = "Eo8BCioIAhgBIiQy"
ISSUED_CONTENT = {result["encrypted_content"] for result in SEARCH_RESULTS}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def last_user(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, None
        for block in content or []:
            if block.get("type") == "tool_result":
                inner = block.get("content")
                text = inner if isinstance(inner, str) else " ".join(b.get("text", "") for b in inner or [])
                return "", text
        return " ".join(b.get("text", "") for b in content or [] if b.get("type") == "text"), None
    return "", None


def is_custom_wrapper(tool: dict[str, Any]) -> bool:
    """A tool whose input is one string `input`: how a gateway offers a custom (freeform) tool."""
    schema = tool.get("input_schema") or {}
    return list(schema.get("properties") or {}) == ["input"] and schema["properties"]["input"].get("type") == "string"


def json_pieces(value: dict[str, Any]) -> list[str]:
    """A tool input's JSON as the deltas that stream it: `{"city": "Paris"}` in three, anything else in many."""
    if value == {"city": "Paris"}:
        return ["", '{"city"', ': "Par', 'is"}']
    text = json.dumps(value)  # ASCII, so escapes and surrogate pairs are cut too
    return ["", *(text[start : start + 5] for start in range(0, len(text), 5))]


def unverified(body: dict[str, Any]) -> str | None:
    """Anthropic's refusal of what it did not issue in the history, None when all is its own."""
    last_assistant: list[Any] = []
    for message in body["messages"]:
        content = message["content"] if isinstance(message["content"], list) else []
        if message.get("role") == "assistant":
            last_assistant = content
        for block in content:
            kind = block.get("type")
            if kind == "thinking" and block.get("signature") != SIGNATURE:
                return "messages: Invalid `signature` in `thinking` block"
            results = block.get("content") if kind == "web_search_tool_result" else None
            if isinstance(results, list) and any(r.get("encrypted_content") not in ISSUED_CONTENT for r in results):
                return "messages: Invalid `encrypted_content` in `web_search_result`"
            for citation in block.get("citations") or () if kind == "text" else ():
                if citation.get("encrypted_index") != ENCRYPTED_INDEX:
                    return "messages: Invalid `encrypted_index` in citation"
    thinking = (body.get("thinking") or {}).get("type") == "enabled"
    calls = any(block.get("type") == "tool_use" for block in last_assistant)
    if thinking and calls and last_assistant[0].get("type") not in ("thinking", "redacted_thinking"):
        return (
            "messages: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is"
            " enabled, a final `assistant` message must start with a thinking block."
        )
    return None


def search_blocks(text: str) -> list[dict[str, Any]]:
    citation = {
        "type": "web_search_result_location",
        "url": SEARCH_RESULTS[0]["url"],
        "title": SEARCH_RESULTS[0]["title"],
        "encrypted_index": ENCRYPTED_INDEX,
        "cited_text": "Python 3.14.0 is the newest major release of the Python programming language.",
    }
    return [
        {"type": "server_tool_use", "id": SEARCH_ID, "name": "web_search", "input": {"query": text}},
        {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": SEARCH_RESULTS},
        {"type": "text", "text": "Based on the search results, "},
        {"type": "text", "text": SEARCH_ANSWER, "citations": [citation]},
    ]


class AnthropicDouble:
    def __init__(self, key: str = "sk-ant-test") -> None:
        self.key = key
        self.requests: list[Received] = []
        self.url = ""
        self.sampled = 0
        self._failures: list[tuple[int, str]] = []
        self._cut: int | None = None
        self._error_after: int | None = None
        self._runner: web.AppRunner | None = None

    def fail_next(self, status: int, error_type: str | None = None) -> None:
        self._failures.append((status, error_type or ERROR_TYPES.get(status, "api_error")))

    def cut_after(self, events: int) -> None:
        self._cut = events

    def error_after(self, events: int) -> None:
        self._error_after = events

    async def start(self) -> AnthropicDouble:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _sample(self, body: dict[str, Any]) -> str:
        if not body.get("temperature"):
            return ""
        self.sampled += 1
        return f" #{self.sampled}"

    @staticmethod
    def _error(status: int, kind: str, message: str) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != self.key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "invalid_request_error", "anthropic-version header is required")
        body = await request.json()
        self.requests.append(Received(request.path, body, dict(request.headers)))
        if self._failures:
            status, kind = self._failures.pop(0)
            return self._error(status, kind, "injected failure")
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return self._error(400, "invalid_request_error", f"{field}: Field required")
        for message in body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block.get("type") == "text" and not block.get("text"):
                    return self._error(400, "invalid_request_error", "text content blocks must be non-empty")
        refusal = unverified(body)
        if refusal is not None:
            return self._error(400, "invalid_request_error", refusal)

        text, tool_output = last_user(body["messages"])
        offered = body.get("tools") or []
        tools = [tool for tool in offered if tool.get("type") in (None, "custom")]
        searches = any(tool.get("type") == "web_search_20250305" for tool in offered)
        choice = body.get("tool_choice") or {}
        blocks: list[dict[str, Any]] = []
        if (body.get("thinking") or {}).get("type") == "enabled":
            blocks.append({"type": "thinking", "thinking": "Let me think about it.", "signature": SIGNATURE})
        stop_reason = "end_turn"
        scripted = scripted_call(text, [tool["name"] for tool in tools]) if choice.get("type") != "none" else None
        if tool_output is not None:
            blocks.append({"type": "text", "text": f"The tool said {tool_output}"})
        elif scripted is not None:
            name, arguments = scripted
            blocks.append({"type": "tool_use", "id": "toolu_double_1", "name": name, "input": arguments})
            stop_reason = "tool_use"
        elif searches and "search" in text.lower():
            blocks += search_blocks(text)
        elif (
            tools and choice.get("type") != "none" and ("call" in text.lower() or choice.get("type") in ("any", "tool"))
        ):
            name = choice.get("name") if choice.get("type") == "tool" else tools[0]["name"]
            tool = next((tool for tool in tools if tool["name"] == name), tools[0])
            arguments = {"input": PATCH} if is_custom_wrapper(tool) else {"city": "Paris"}
            blocks.append({"type": "tool_use", "id": "toolu_double_1", "name": name, "input": arguments})
            stop_reason = "tool_use"
        else:
            blocks.append({"type": "text", "text": f"Hello from Claude: {text}{self._sample(body)}"})
        usage = {
            "input_tokens": INPUT_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
            "cache_creation_input_tokens": 0,
        }
        if not body.get("stream"):
            message = {
                "id": "msg_double",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": 7},
            }
            return web.json_response(message)
        return await self._stream(request, body, blocks, stop_reason, usage)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any]
    ) -> web.StreamResponse:
        events: list[dict[str, Any]] = []
        start = {
            "id": "msg_double",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events.append({"type": "message_start", "message": start})
        events.append({"type": "ping"})
        deltas = 0
        for index, block in enumerate(blocks):
            if block["type"] == "thinking":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                    }
                )
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
                deltas += 1
            elif block["type"] in ("tool_use", "server_tool_use"):
                shell = {**block, "input": {}}
                events.append({"type": "content_block_start", "index": index, "content_block": shell})
                for piece in json_pieces(block["input"]):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
                    deltas += 1
            elif block["type"] == "web_search_tool_result":
                events.append({"type": "content_block_start", "index": index, "content_block": block})
            else:
                shell = {"type": "text", "text": ""}
                if "citations" in block:
                    shell["citations"] = []
                events.append({"type": "content_block_start", "index": index, "content_block": shell})
                for citation in block.get("citations", []):
                    delta = {"type": "citations_delta", "citation": citation}
                    events.append({"type": "content_block_delta", "index": index, "delta": delta})
                words = block["text"].split(" ")
                for position, word in enumerate(words):
                    piece = word + (" " if position < len(words) - 1 else "")
                    events.append(
                        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
                    )
                    deltas += 1
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": deltas},
            }
        )
        events.append({"type": "message_stop"})

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        cut, self._cut = self._cut, None
        error_after, self._error_after = self._error_after, None
        for number, event in enumerate(events):
            if cut is not None and number >= cut:
                return response
            if error_after is not None and number >= error_after:
                error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                await response.write(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
                return response
            await response.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
            await asyncio.sleep(0)
        await response.write_eof()
        return response
