"""OpenAI's Chat Completions and Responses APIs on 127.0.0.1, as OpenAI publishes them.

    POST /v1/chat/completions   Authorization: Bearer <key>; `stream` with `stream_options.include_usage`
    POST /v1/responses          `input` items, function tools; streams the semantic events

Answers are deterministic: the text is "Hello from OpenAI: <last user text>"; when the last
user text scripts a call, `call <tool> with <JSON object>` naming an offered tool
(`hypereal.providers.echo.scripted_call`), the answer is a call of exactly that tool with
exactly those arguments; otherwise when tools are offered and the text says "call" (or
`tool_choice` demands it), the answer is a call of the first tool (or the named one) with
`{"city": "Paris"}`; the arguments stream as fragments split across chunks. After a tool
result, the text reports it. With a `temperature` above 0 a text answer varies as sampling
would: it ends with " #k", k counting the double's answers. Chat Completions honours `n`,
each choice streamed with its `index`. Usage is `prompt_tokens = 11` (once, whatever `n`)
and `completion_tokens` = 5 per choice, or the number of chunks of all choices when
streaming.

Web search, when the last user text says "search": the Responses API, offered a
`web_search` tool, answers with a `web_search_call` item (its `action.sources` listed when
`include` asks for them) and a message whose text cites one page (`url_citation`,
`response.output_text.annotation.added` when streaming); Chat Completions takes
`web_search_options` only for a search model (a model named `…-search-preview` or
`…-search-api`), whose message carries the citation in `annotations` (one delta of
`annotations` after the text when streaming), and refuses it for any other model with a 400.

Reasoning: a Responses request with `reasoning` gets a reasoning item first, its
`encrypted_content` (`ENCRYPTED`) only when `include` asks for it. As OpenAI does, the
Responses API refuses (400) an input reasoning item whose `encrypted_content` it did not
issue, and one without it (stateless: no stored item to look the id up in).

Faults: `fail_next(status, body)` answers the next request with an error; `cut_after(n)`
closes the next stream after n chunks without finishing; `error_after(n)` sends an error
event after n chunks; `omit_done` leaves `[DONE]` out. `requests` records each body.

`BackgroundServer` runs a double on a loop in its own thread, for sync clients.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from hypereal.providers.echo import scripted_call

PROMPT_TOKENS = 11
TOOL_ARGUMENTS = '{"city": "Paris"}'
SEARCH_ANSWER = "Python 3.14 is the newest release."
SEARCH_PAGE = {"url": "https://www.python.org/downloads/", "title": "Download Python"}
SEARCH_SOURCES = [SEARCH_PAGE["url"], "https://docs.python.org/3/whatsnew/"]
ENCRYPTED = "gAAAAABpDoubleReasoning0001"
REASONING_SUMMARY = "Thinking it over."


Call = tuple[str, str]
"""A function call the double makes: (tool name, arguments as JSON text)."""


def argument_pieces(arguments: str) -> list[str]:
    """A call's arguments as the fragments that stream them: the default call in three, any other in many."""
    if arguments == TOOL_ARGUMENTS:
        return ['{"ci', 'ty": "Pa', 'ris"}']
    return [arguments[start : start + 5] for start in range(0, len(arguments), 5)]


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def last_user_text(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(text of the last user turn, tool output if that turn answers a tool)."""
    for message in reversed(messages):
        role = message.get("role")
        content = message.get("content")
        if role == "tool" or message.get("type") == "function_call_output":
            output = content if content is not None else message.get("output")
            if isinstance(output, list):  # content parts, as Chat Completions and Responses both allow
                return "", " ".join(str(part.get("text", "")) for part in output if isinstance(part, dict))
            return "", str(output)
        if role == "user":
            if isinstance(content, str):
                return content, None
            texts = [part.get("text", "") for part in content or [] if isinstance(part, dict)]
            return " ".join(text for text in texts if text), None
    return "", None


class OpenAIDouble:
    def __init__(self, key: str = "sk-test-openai") -> None:
        self.key = key
        self.requests: list[Received] = []
        self.url = ""
        self.omit_done = False
        self.sampled = 0
        self._failures: list[tuple[int, Any]] = []
        self._cut: int | None = None
        self._error_after: int | None = None
        self._runner: web.AppRunner | None = None

    def fail_next(self, status: int, body: Any = None) -> None:
        self._failures.append((status, body or {"error": {"message": "injected failure", "type": "server_error"}}))

    def cut_after(self, chunks: int) -> None:
        self._cut = chunks

    def error_after(self, chunks: int) -> None:
        self._error_after = chunks

    async def start(self) -> OpenAIDouble:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _accept(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            return web.json_response(error, status=401)
        body = await request.json()
        self.requests.append(Received(request.path, body, dict(request.headers)))
        if self._failures:
            status, payload = self._failures.pop(0)
            return web.json_response(payload, status=status)
        return dict(body)

    def _plan(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[Call | None, str]:
        """(the call to make or None, text)."""
        text, tool_output = last_user_text(messages)
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if tool_output is not None:
            return None, f"The tool said {tool_output}"
        names = [str((tool.get("function") or tool).get("name")) for tool in tools]
        scripted = scripted_call(text, names) if choice != "none" else None
        if scripted is not None:
            return (scripted[0], orjson.dumps(scripted[1]).decode()), ""
        if tools and choice != "none" and ("call" in text.lower() or choice == "required" or isinstance(choice, dict)):
            if isinstance(choice, dict):
                return ((choice.get("function") or choice).get("name"), TOOL_ARGUMENTS), ""
            return (names[0], TOOL_ARGUMENTS), ""
        return None, f"Hello from OpenAI: {text}"

    def _sample(self, body: dict[str, Any], text: str) -> str:
        """`text` as one more sampled answer: numbered when a temperature above 0 was asked for."""
        if not text or not body.get("temperature"):
            return text
        self.sampled += 1
        return f"{text} #{self.sampled}"

    @staticmethod
    def _searches(messages: list[dict[str, Any]], offered: bool) -> bool:
        """Whether this answer is a web search: one was offered and the last user text asks for it."""
        text, tool_output = last_user_text(messages)
        return offered and tool_output is None and "search" in text.lower()

    # ------------------------------------------------------------ chat completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        accepted = await self._accept(request)
        if isinstance(accepted, web.Response):
            return accepted
        body = accepted
        searching = body.get("web_search_options") is not None
        if searching and not re.search(r"-search-(preview|api)", str(body["model"])):
            error = {
                "message": "web_search_options is only supported by the search models",
                "type": "invalid_request_error",
                "param": "web_search_options",
                "code": None,
            }
            return web.json_response({"error": error}, status=400)
        call, text = self._plan(body, body.get("messages") or [])
        cites = self._searches(body.get("messages") or [], searching)
        if cites:
            call, text = None, SEARCH_ANSWER
        texts = [self._sample(body, text) for _ in range(int(body.get("n") or 1))]
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            choices = [
                {"index": index, "message": _message(call, answer, cites), "logprobs": None, "finish_reason": finish}
                for index, answer in enumerate(texts)
            ]
            completion = {
                "id": "chatcmpl-double",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": choices,
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": 5 * len(texts),
                    "total_tokens": PROMPT_TOKENS + 5 * len(texts),
                    "prompt_tokens_details": {"cached_tokens": 0},
                },
            }
            return web.json_response(completion)
        deltas = [_deltas(call, answer) for answer in texts]
        if cites:  # the annotations follow the text in a delta of their own
            for choice, answer in zip(deltas, texts, strict=True):
                choice.append({"annotations": [_chat_annotation(answer)]})
        # The choices' chunks interleave, as OpenAI sends them.
        chunks = [
            _chunk(body, choice[step], None, index)
            for step in range(max(len(choice) for choice in deltas))
            for index, choice in enumerate(deltas)
            if step < len(choice)
        ]
        chunks.extend(_chunk(body, {}, finish, index) for index in range(len(texts)))
        if (body.get("stream_options") or {}).get("include_usage"):
            produced = sum(len(choice) for choice in deltas)
            usage = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": produced,
                "total_tokens": PROMPT_TOKENS + produced,
            }
            chunks.append({**_chunk(body, {}, None), "choices": [], "usage": usage})
        payloads = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
        if not self.omit_done:
            payloads.append(b"data: [DONE]\n\n")
        error = b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
        return await self._stream(request, payloads, error)

    async def _stream(self, request: web.Request, payloads: list[bytes], error: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        cut, self._cut = self._cut, None
        error_after, self._error_after = self._error_after, None
        for number, payload in enumerate(payloads):
            if cut is not None and number >= cut:
                return response
            if error_after is not None and number >= error_after:
                await response.write(error)
                return response
            await response.write(payload)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    # ------------------------------------------------------------ responses

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        accepted = await self._accept(request)
        if isinstance(accepted, web.Response):
            return accepted
        body = accepted
        items = body.get("input")
        messages = [{"role": "user", "content": items}] if isinstance(items, str) else list(items or [])
        refusal = _unverified_reasoning(messages)
        if refusal is not None:
            error = {"error": {"message": refusal, "type": "invalid_request_error", "param": "input"}}
            return web.json_response(error, status=400)
        offered = any(str(tool.get("type", "")).startswith("web_search") for tool in body.get("tools") or [])
        if self._searches(messages, offered):
            return await self._search_response(request, body, last_user_text(messages)[0])
        call, text = self._plan(body, messages)
        text = self._sample(body, text)
        usage = {
            "input_tokens": PROMPT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": PROMPT_TOKENS + 5,
        }
        if call:
            item = {
                "id": "fc_double",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_double_1",
                "name": call[0],
                "arguments": call[1],
            }
        else:
            content = [{"type": "output_text", "text": text, "annotations": []}]
            item = {
                "id": "msg_double",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        reasoning = _reasoning_item(body)
        main = 1 if reasoning else 0
        response = _response(body, [*([reasoning] if reasoning else []), item], usage)
        if not body.get("stream"):
            return web.json_response(response)
        sequence = iter(range(1000))
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {**response, "status": "in_progress", "output": [], "usage": None}}),
        ]
        if reasoning:
            shell = {**reasoning, "summary": []}
            shell.pop("encrypted_content", None)
            events.append(("response.output_item.added", {"output_index": 0, "item": shell}))
            delta = {"item_id": reasoning["id"], "output_index": 0, "summary_index": 0, "delta": REASONING_SUMMARY}
            events.append(("response.reasoning_summary_text.delta", delta))
            events.append(("response.output_item.done", {"output_index": 0, "item": reasoning}))
        if call:
            shell = {**item, "arguments": "", "status": "in_progress"}
            events.append(("response.output_item.added", {"output_index": main, "item": shell}))
            for piece in argument_pieces(call[1]):
                events.append(
                    (
                        "response.function_call_arguments.delta",
                        {"item_id": "fc_double", "output_index": main, "delta": piece},
                    )
                )
            events.append(
                (
                    "response.function_call_arguments.done",
                    {"item_id": "fc_double", "output_index": main, "arguments": call[1]},
                )
            )
        else:
            shell = {**item, "content": [], "status": "in_progress"}
            events.append(("response.output_item.added", {"output_index": main, "item": shell}))
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                (
                    "response.content_part.added",
                    {"item_id": "msg_double", "output_index": main, "content_index": 0, "part": part},
                )
            )
            for word in _words(text):
                events.append(
                    (
                        "response.output_text.delta",
                        {
                            "item_id": "msg_double",
                            "output_index": main,
                            "content_index": 0,
                            "delta": word,
                            "logprobs": [],
                        },
                    )
                )
            events.append(
                (
                    "response.output_text.done",
                    {"item_id": "msg_double", "output_index": main, "content_index": 0, "text": text, "logprobs": []},
                )
            )
            events.append(
                (
                    "response.content_part.done",
                    {"item_id": "msg_double", "output_index": main, "content_index": 0, "part": {**part, "text": text}},
                )
            )
        events.append(("response.output_item.done", {"output_index": main, "item": item}))
        events.append(("response.completed", {"response": response}))
        payloads = [
            b"event: "
            + name.encode()
            + b"\ndata: "
            + orjson.dumps({"type": name, "sequence_number": next(sequence), **data})
            + b"\n\n"
            for name, data in events
        ]
        failure = {"type": "error", "code": "server_error", "message": "The server had an error", "sequence_number": 99}
        error = b"event: error\ndata: " + orjson.dumps(failure) + b"\n\n"
        return await self._stream(request, payloads, error)

    async def _search_response(self, request: web.Request, body: dict[str, Any], query: str) -> web.StreamResponse:
        """A web search, then a message citing one page of it."""
        text = self._sample(body, SEARCH_ANSWER)
        action: dict[str, Any] = {"type": "search", "query": query}
        if "web_search_call.action.sources" in (body.get("include") or []):
            action["sources"] = [{"type": "url", "url": url} for url in SEARCH_SOURCES]
        search = {"id": "ws_double", "type": "web_search_call", "status": "completed", "action": action}
        annotation = {"type": "url_citation", "start_index": 0, "end_index": len(text), **SEARCH_PAGE}
        part = {"type": "output_text", "text": text, "annotations": [annotation]}
        message = {"id": "msg_double", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": 5, "total_tokens": PROMPT_TOKENS + 5}
        response = _response(body, [search, message], usage)
        if not body.get("stream"):
            return web.json_response(response)
        where = {"item_id": "msg_double", "output_index": 1, "content_index": 0}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {**response, "status": "in_progress", "output": [], "usage": None}}),
            ("response.output_item.added", {"output_index": 0, "item": {**search, "status": "in_progress"}}),
            *[
                (f"response.web_search_call.{stage}", {"item_id": "ws_double", "output_index": 0})
                for stage in ("in_progress", "searching", "completed")
            ],
            ("response.output_item.done", {"output_index": 0, "item": search}),
            (
                "response.output_item.added",
                {"output_index": 1, "item": {**message, "content": [], "status": "in_progress"}},
            ),
            ("response.content_part.added", {**where, "part": {**part, "text": "", "annotations": []}}),
            *[("response.output_text.delta", {**where, "delta": word}) for word in _words(text)],
            ("response.output_text.annotation.added", {**where, "annotation_index": 0, "annotation": annotation}),
            ("response.output_text.done", {**where, "text": text}),
            ("response.content_part.done", {**where, "part": part}),
            ("response.output_item.done", {"output_index": 1, "item": message}),
            ("response.completed", {"response": response}),
        ]
        payloads = [
            b"event: "
            + name.encode()
            + b"\ndata: "
            + orjson.dumps({"type": name, "sequence_number": number, **data})
            + b"\n\n"
            for number, (name, data) in enumerate(events)
        ]
        return await self._stream(request, payloads, b"")


def _reasoning_item(body: dict[str, Any]) -> dict[str, Any] | None:
    if not body.get("reasoning"):
        return None
    item: dict[str, Any] = {
        "id": "rs_double",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": REASONING_SUMMARY}],
    }
    if "reasoning.encrypted_content" in (body.get("include") or []):
        item["encrypted_content"] = ENCRYPTED
    return item


def _unverified_reasoning(items: list[dict[str, Any]]) -> str | None:
    """OpenAI's refusal of an input reasoning item it cannot verify, None when all are its own."""
    for item in items:
        if item.get("type") != "reasoning":
            continue
        if "encrypted_content" not in item:
            return f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is false."
        if item["encrypted_content"] != ENCRYPTED:
            return "The encrypted content for item could not be verified."
    return None


def _response(body: dict[str, Any], output: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "resp_double",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage,
    }


def _chat_annotation(text: str) -> dict[str, Any]:
    return {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": len(text), **SEARCH_PAGE}}


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if index < len(words) - 1 else "") for index, word in enumerate(words)]


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-double",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body["model"],
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _message(call: Call | None, text: str, cites: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if cites:
        message["annotations"] = [_chat_annotation(text)]
    if call:
        function = {"name": call[0], "arguments": call[1]}
        message["tool_calls"] = [{"id": "call_double_1", "type": "function", "function": function}]
    return message


def _deltas(call: Call | None, text: str) -> list[dict[str, Any]]:
    """The deltas of one streamed choice: the role, then the words or the call in pieces."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if not call:
        return deltas + [{"content": word} for word in _words(text)]
    shell = {"index": 0, "id": "call_double_1", "type": "function", "function": {"name": call[0], "arguments": ""}}
    deltas.append({"tool_calls": [shell]})
    for piece in argument_pieces(call[1]):
        deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    return deltas


class BackgroundServer:
    """Runs an async server (anything with `start()`/`stop()`) on an event loop in its own thread."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        self.call(self.server.start)
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def call(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout=30)  # type: ignore[arg-type]
