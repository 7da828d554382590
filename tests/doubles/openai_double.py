"""OpenAI's Chat Completions and Responses APIs on 127.0.0.1, as OpenAI publishes them.

    POST /v1/chat/completions   Authorization: Bearer <key>; `stream` with `stream_options.include_usage`
    POST /v1/responses          `input` items, function tools; streams the semantic events

Answers are deterministic: the text is "Hello from OpenAI: <last user text>"; when tools are
offered and the last user text says "call" (or `tool_choice` demands it), the answer is a
call of the first tool (or the named one) with `{"city": "Paris"}`, streamed as argument
fragments split across chunks; after a tool result, the text reports it. With a
`temperature` above 0 a text answer varies as sampling would: it ends with " #k", k
counting the double's answers. Chat Completions honours `n`, each choice streamed with its
`index`. Usage is `prompt_tokens = 11` (once, whatever `n`) and `completion_tokens` = 5 per
choice, or the number of chunks of all choices when streaming.

Faults: `fail_next(status, body)` answers the next request with an error; `cut_after(n)`
closes the next stream after n chunks without finishing; `error_after(n)` sends an error
event after n chunks; `omit_done` leaves `[DONE]` out. `requests` records each body.

`BackgroundServer` runs a double on a loop in its own thread, for sync clients.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

PROMPT_TOKENS = 11
TOOL_ARGUMENTS = '{"city": "Paris"}'


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
            return "", str(content if content is not None else message.get("output"))
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

    def _plan(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[str | None, str]:
        """(tool name to call or None, text)."""
        text, tool_output = last_user_text(messages)
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if tool_output is not None:
            return None, f"The tool said {tool_output}"
        if tools and choice != "none" and ("call" in text.lower() or choice == "required" or isinstance(choice, dict)):
            if isinstance(choice, dict):
                return (choice.get("function") or choice).get("name"), ""
            first = tools[0]
            return (first.get("function") or first).get("name"), ""
        return None, f"Hello from OpenAI: {text}"

    def _sample(self, body: dict[str, Any], text: str) -> str:
        """`text` as one more sampled answer: numbered when a temperature above 0 was asked for."""
        if not text or not body.get("temperature"):
            return text
        self.sampled += 1
        return f"{text} #{self.sampled}"

    # ------------------------------------------------------------ chat completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        accepted = await self._accept(request)
        if isinstance(accepted, web.Response):
            return accepted
        body = accepted
        tool, text = self._plan(body, body.get("messages") or [])
        texts = [self._sample(body, text) for _ in range(int(body.get("n") or 1))]
        finish = "tool_calls" if tool else "stop"
        if not body.get("stream"):
            choices = [
                {"index": index, "message": _message(tool, answer), "logprobs": None, "finish_reason": finish}
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
        deltas = [_deltas(tool, answer) for answer in texts]
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
        tool, text = self._plan(body, messages)
        text = self._sample(body, text)
        usage = {
            "input_tokens": PROMPT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": PROMPT_TOKENS + 5,
        }
        if tool:
            item = {
                "id": "fc_double",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_double_1",
                "name": tool,
                "arguments": TOOL_ARGUMENTS,
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
        response = {
            "id": "resp_double",
            "object": "response",
            "created_at": 1700000000,
            "status": "completed",
            "model": body["model"],
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(response)
        sequence = iter(range(1000))
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {**response, "status": "in_progress", "output": [], "usage": None}}),
        ]
        if tool:
            shell = {**item, "arguments": "", "status": "in_progress"}
            events.append(("response.output_item.added", {"output_index": 0, "item": shell}))
            for piece in ('{"ci', 'ty": "Pa', 'ris"}'):
                events.append(
                    (
                        "response.function_call_arguments.delta",
                        {"item_id": "fc_double", "output_index": 0, "delta": piece},
                    )
                )
            events.append(
                (
                    "response.function_call_arguments.done",
                    {"item_id": "fc_double", "output_index": 0, "arguments": TOOL_ARGUMENTS},
                )
            )
        else:
            shell = {**item, "content": [], "status": "in_progress"}
            events.append(("response.output_item.added", {"output_index": 0, "item": shell}))
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                (
                    "response.content_part.added",
                    {"item_id": "msg_double", "output_index": 0, "content_index": 0, "part": part},
                )
            )
            for word in _words(text):
                events.append(
                    (
                        "response.output_text.delta",
                        {"item_id": "msg_double", "output_index": 0, "content_index": 0, "delta": word, "logprobs": []},
                    )
                )
            events.append(
                (
                    "response.output_text.done",
                    {"item_id": "msg_double", "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
                )
            )
            events.append(
                (
                    "response.content_part.done",
                    {"item_id": "msg_double", "output_index": 0, "content_index": 0, "part": {**part, "text": text}},
                )
            )
        events.append(("response.output_item.done", {"output_index": 0, "item": item}))
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


def _message(tool: str | None, text: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool:
        call = {"id": "call_double_1", "type": "function", "function": {"name": tool, "arguments": TOOL_ARGUMENTS}}
        message["tool_calls"] = [call]
    return message


def _deltas(tool: str | None, text: str) -> list[dict[str, Any]]:
    """The deltas of one streamed choice: the role, then the words or the call in pieces."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if not tool:
        return deltas + [{"content": word} for word in _words(text)]
    shell = {"index": 0, "id": "call_double_1", "type": "function", "function": {"name": tool, "arguments": ""}}
    deltas.append({"tool_calls": [shell]})
    for piece in ('{"ci', 'ty": "Pa', 'ris"}'):
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
