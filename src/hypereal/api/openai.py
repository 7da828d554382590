"""OpenAI-compatible surfaces: Chat Completions and the Responses API (Codex CLI, Cursor, SDKs).

Errors here take OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), chosen
by the router's `openai` tag. `GET` on either path lists the chat models with their
prices, which is how the docs tell Codex CLI users to check their set-up.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hypereal.api import schemas
from hypereal.api.chat_schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    OpenAIError,
    ResponseObject,
    ResponsesEvent,
    ResponsesRequest,
)
from hypereal.api.deps import ServicesDep, authorized_body
from hypereal.api.event_stream import EventStream
from hypereal.api.fastlane import fast
from hypereal.api.models import model_list
from hypereal.api.openapi import PUBLIC, errors, event_stream, json_body
from hypereal.api.responses import JsonResponse
from hypereal.errors import NotFound
from hypereal.llm import continuity, fields, openai_chat, openai_responses
from hypereal.llm.errors import openai_error
from hypereal.llm.gateway import Surface, gateway
from hypereal.llm.openai_chat_stream import StreamEncoder as ChatStreamEncoder
from hypereal.llm.openai_responses_stream import StreamEncoder as ResponsesStreamEncoder
from hypereal.llm.taps import OpenAIChatTap, ResponsesTap
from hypereal.llm.types import ChatRequest, ChatResponse, Message, new_id

router = APIRouter(tags=["openai"])
# A body over the limit that announced its length is refused before any route is known, in the native shape.
FAILURES = {
    **errors(400, 401, 402, 404, 429, 502, 503, 504, shape=OpenAIError, render=openai_error),
    **errors(413, shape=OpenAIError, render=openai_error, also=schemas.Error),
}


def _chat_upstream_body(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    forwarded = {**body, "model": model}
    if stream:
        # Usage is what the bill is made of; ask for it whatever the client asked.
        options = body.get("stream_options")
        forwarded["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        forwarded.pop("stream_options", None)
    return forwarded


def _chat_max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chat_stream_error(error: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(error) + b"\n\n"


OPENAI_CHAT = Surface(
    protocol="openai-chat",
    decode=openai_chat.decode_request,
    error_body=openai_error,
    new_tap=lambda body: OpenAIChatTap(forward_usage=_wants_usage(body)),
    usage_of=OpenAIChatTap.usage_of,
    stream_error=_chat_stream_error,
    upstream_body=_chat_upstream_body,
    max_tokens_of=_chat_max_tokens,
    choices_of=openai_chat.choices_of,
)


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _responses_max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _responses_stream_error(error: dict[str, Any]) -> bytes:
    detail = error.get("error") or {}
    payload = {"type": "error", "code": detail.get("code"), "message": detail.get("message"), "param": None}
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


OPENAI_RESPONSES = Surface(
    protocol="openai-responses",
    decode=openai_responses.decode_request,
    error_body=openai_error,
    new_tap=lambda body: ResponsesTap(),
    usage_of=ResponsesTap.usage_of,
    stream_error=_responses_stream_error,
    upstream_body=lambda body, model, stream: {**body, "model": model},
    max_tokens_of=_responses_max_tokens,
    own_tokens=continuity.responses_own,
)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: event_stream(ChatCompletionChunk, done=True, error=OpenAIError), **FAILURES},
    openapi_extra=json_body(ChatCompletionRequest),
)
@fast
async def chat_completions(request: Request) -> Response:
    """OpenAI Chat Completions, streaming or not, billed per token."""
    principal, services, body = await authorized_body(request)
    model = fields.string(body, "model", required=True)
    assert model is not None
    spec = services.catalog.resolve(model, ("llm",))
    chat = gateway(services)
    raw = await request.body()
    if body.get("stream") is True:
        include_usage = _wants_usage(body)

        def encoder(canonical: ChatRequest, estimate: int) -> ChatStreamEncoder:
            return ChatStreamEncoder(spec.id, include_usage=include_usage)

        opened = await chat.open_stream(principal, spec, OPENAI_CHAT, body, encoder, raw=raw, headers={})
        return EventStream(opened.chunks, opened.headers)
    done = await chat.complete(principal, spec, OPENAI_CHAT, body, raw=raw, headers={})
    if done.forwarded is not None:
        return Response(done.forwarded.body, media_type="application/json", headers=done.headers)
    assert done.response is not None
    return JsonResponse(openai_chat.encode_response(done.response, spec.id), headers=done.headers)


@router.get("/chat/completions", response_model=schemas.ModelList, openapi_extra=PUBLIC)
async def chat_models(services: ServicesDep) -> JsonResponse:
    """The chat models with their per-token prices."""
    return JsonResponse(model_list(services.catalog, "llm"))


@router.post(
    "/responses",
    response_model=ResponseObject,
    responses={200: event_stream(ResponsesEvent), **FAILURES, **errors(404, shape=OpenAIError, render=openai_error)},
    openapi_extra=json_body(ResponsesRequest),
)
@fast
async def responses(request: Request) -> Response:
    """OpenAI Responses API as Codex CLI uses it, streaming or not."""
    principal, services, body = await authorized_body(request)
    model = fields.string(body, "model", required=True)
    assert model is not None
    spec = services.catalog.resolve(model, ("llm",))
    chat = gateway(services)
    raw = await request.body()
    response_id = new_id("resp_")
    previous = fields.string(body, "previous_response_id")
    canonical: ChatRequest | None = None
    if previous is not None:
        history = await chat.responses.find(previous, principal.account_id)
        first = chat.router.chat(spec).targets[0]
        if history is not None:
            canonical = openai_responses.decode_request(body)
            canonical.messages = history + canonical.messages
        elif not first.provider.forwards("openai-responses", first.model):
            raise NotFound(f"Previous response '{previous}' not found", field="previous_response_id")
        # else an id of the upstream's own, which keeps its responses itself
    store = body.get("store") is not False

    async def remember(request_: ChatRequest, response: ChatResponse) -> None:
        # Committed before the answer (or its last event) goes out, so a follow-up sent at once,
        # to any process, finds it.
        if store:
            conversation = [*request_.messages, Message("assistant", list(response.content))]
            await chat.responses.put(response_id, principal.account_id, conversation)

    if body.get("stream") is True:

        def encoder(canonical_: ChatRequest, estimate: int) -> ResponsesStreamEncoder:
            return ResponsesStreamEncoder(spec.id, body, response_id)

        opened = await chat.open_stream(
            principal,
            spec,
            OPENAI_RESPONSES,
            body,
            encoder,
            raw=raw,
            headers={},
            canonical=canonical,
            on_response=remember,
        )
        return EventStream(opened.chunks, opened.headers)
    done = await chat.complete(principal, spec, OPENAI_RESPONSES, body, raw=raw, headers={}, canonical=canonical)
    if done.forwarded is not None:
        return Response(done.forwarded.body, media_type="application/json", headers=done.headers)
    assert done.response is not None and done.request is not None
    await remember(done.request, done.response)
    answer = openai_responses.encode_response(done.response, spec.id, body, response_id)
    return JsonResponse(answer, headers=done.headers)


@router.get("/responses", response_model=schemas.ModelList, openapi_extra=PUBLIC)
async def responses_models(services: ServicesDep) -> JsonResponse:
    """The chat models with their prices: the check the docs give Codex CLI users."""
    return JsonResponse(model_list(services.catalog, "llm"))
