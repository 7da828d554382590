"""The native chat endpoint of the docs: an OpenAI-shaped answer plus `creditsUsed`.

`model` may be left out; the first chat model a real upstream can serve is used then.
A stream is OpenAI's chunk stream whose last chunk before `[DONE]` also carries the
settled `creditsUsed`: the finish chunk, or the usage chunk when the client asked for one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hypereal.api.chat_schemas import ChatCompletionChunk, NativeChatCompletion, NativeChatRequest, OpenAIError
from hypereal.api.deps import authorized_body
from hypereal.api.event_stream import EventStream
from hypereal.api.fastlane import fast
from hypereal.api.openai import OPENAI_CHAT
from hypereal.api.openapi import errors, event_stream, json_body
from hypereal.api.responses import JsonResponse
from hypereal.llm import fields, openai_chat, sse
from hypereal.llm.gateway import gateway
from hypereal.llm.openai_chat_stream import StreamEncoder
from hypereal.llm.taps import OpenAIChatTap
from hypereal.llm.types import ChatRequest, StopReason, Usage, new_id
from hypereal.units import to_credits

router = APIRouter(tags=["chat"])
DATA = b"data: "


class NativeStream:
    """The end of one native stream: its last chunk, held back until the call is settled.

    The encoder (translated streams) or the tap (forwarded ones) keeps the last chunk and
    drops `[DONE]`; the gateway asks for the `closing` once it knows the cost.
    """

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_id("chatcmpl-")
        self.last: bytes | None = None
        """The JSON of the last chunk, not sent yet."""

    def encoder(self, canonical: ChatRequest, estimate: int) -> StreamEncoder:
        encoder = _Encoder(self, self.model, include_usage=self.include_usage)
        self.id = encoder.id
        return encoder

    def tap(self, body: dict[str, Any]) -> OpenAIChatTap:
        return _Tap(self, forward_usage=self.include_usage)

    def closing(self, cost: int) -> bytes:
        last = orjson.loads(self.last) if self.last is not None else None
        if not isinstance(last, dict):  # an upstream that sent no finish chunk
            last = {"id": self.id, "object": "chat.completion.chunk", "model": self.model, "choices": []}
        last["creditsUsed"] = to_credits(cost)
        return sse.encode(last) + sse.encode_done()


class _Encoder(StreamEncoder):
    def __init__(self, stream: NativeStream, model: str, *, include_usage: bool) -> None:
        super().__init__(model, include_usage=include_usage)
        self.stream = stream

    def finish(self, stop_reason: StopReason | None, usage: Usage | None) -> bytes:
        out = super().finish(stop_reason, usage).removesuffix(sse.encode_done())
        start = out.rfind(DATA)
        self.stream.last = out[start + len(DATA) :].strip()
        return out[:start]


class _Tap(OpenAIChatTap):
    """Forwards the upstream's chunks, one behind from the finish chunk on, so the last can be held."""

    def __init__(self, stream: NativeStream, forward_usage: bool) -> None:
        super().__init__(forward_usage)
        self.stream = stream
        self.held: sse.Event | None = None

    def observe(self, event: sse.Event) -> bytes | None:
        if event.data == sse.DONE:
            self.finished = True
            return None
        out = super().observe(event)
        if out is None or not self.finished:
            return out
        previous, self.held = self.held, event
        self.stream.last = event.data
        return previous.raw if previous is not None else None


@router.post(
    "/chat",
    response_model=NativeChatCompletion,
    responses={
        200: event_stream(ChatCompletionChunk, done=True, error=OpenAIError),
        **errors(400, 401, 402, 404, 413, 429, 502, 503, 504),
    },
    openapi_extra=json_body(NativeChatRequest),
)
@fast
async def chat(request: Request) -> Response:
    """Chat with any catalog model; SSE when `stream` is true. Billed per token, 2 credits minimum."""
    principal, services, body = await authorized_body(request)
    gateway_ = gateway(services)
    model = fields.string(body, "model")
    spec = services.catalog.resolve(model, ("llm",)) if model else gateway_.default_model()
    body = {**body, "model": spec.id}
    raw = await request.body()
    if body.get("stream") is True:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        native = NativeStream(spec.id, include_usage)
        surface = replace(OPENAI_CHAT, new_tap=native.tap)
        opened = await gateway_.open_stream(
            principal, spec, surface, body, native.encoder, raw=raw, headers={}, epilogue=native.closing
        )
        return EventStream(opened.chunks, opened.headers)
    done = await gateway_.complete(principal, spec, OPENAI_CHAT, body, raw=raw, headers={})
    credits = to_credits(done.cost)
    if done.forwarded is not None:
        answer = orjson.dumps({**done.forwarded.payload, "creditsUsed": credits})
        return Response(answer, media_type="application/json", headers=done.headers)
    assert done.response is not None
    return JsonResponse(openai_chat.encode_response(done.response, spec.id, creditsUsed=credits), headers=done.headers)
