"""Anthropic Messages surface: `/messages` and `/messages/count_tokens` (Claude Code, SDKs).

Clients authenticate with `x-api-key` (or a bearer token) and send `anthropic-version`,
which is accepted whatever its value; `anthropic-beta` is passed on to an Anthropic
upstream. Errors take Anthropic's shape, chosen by the router's `anthropic` tag.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hypereal.api.chat_schemas import (
    AnthropicError,
    AnthropicEvent,
    AnthropicMessage,
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
)
from hypereal.api.deps import (
    CurrentKey,
    JsonBody,
    ServicesDep,
    authorized_body,
)
from hypereal.api.event_stream import EventStream
from hypereal.api.fastlane import fast
from hypereal.api.openapi import ANTHROPIC_HEADERS, errors, event_stream, json_body
from hypereal.api.responses import JsonResponse
from hypereal.api.schemas import Error
from hypereal.llm import anthropic, continuity, fields, tokens
from hypereal.llm.anthropic_stream import StreamEncoder
from hypereal.llm.errors import anthropic_error
from hypereal.llm.gateway import Surface, gateway
from hypereal.llm.taps import AnthropicTap
from hypereal.llm.types import ChatRequest

# A body over the limit that announced its length is refused before any route is known, in the native shape.
router = APIRouter(
    tags=["anthropic"],
    responses={
        **errors(400, 401, 404, 429, shape=AnthropicError, render=anthropic_error),
        **errors(413, shape=AnthropicError, render=anthropic_error, also=Error),
    },
)


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stream_error(error: dict[str, Any]) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"


ANTHROPIC = Surface(
    protocol="anthropic-messages",
    decode=anthropic.decode_request,
    error_body=anthropic_error,
    new_tap=lambda body: AnthropicTap(),
    usage_of=AnthropicTap.usage_of,
    stream_error=_stream_error,
    upstream_body=lambda body, model, stream: {**body, "model": model},
    max_tokens_of=_max_tokens,
    own_tokens=continuity.anthropic_own,
)


def _forwarded_headers(request: Request) -> dict[str, str]:
    beta = request.headers.get("anthropic-beta")
    return {"anthropic-beta": beta} if beta else {}


@router.post(
    "/messages",
    response_model=AnthropicMessage,
    responses={
        200: event_stream(AnthropicEvent),
        **errors(402, 502, 503, 504, shape=AnthropicError, render=anthropic_error),
    },
    openapi_extra=json_body(MessagesRequest, parameters=ANTHROPIC_HEADERS),
)
@fast
async def messages(request: Request) -> Response:
    """Anthropic Messages, streaming or not, with tools and extended thinking; billed per token."""
    principal, services, body = await authorized_body(request)
    model = fields.string(body, "model", required=True)
    assert model is not None
    spec = services.catalog.resolve(model, ("llm",))
    chat = gateway(services)
    raw = await request.body()
    headers = _forwarded_headers(request)
    if body.get("stream") is True:

        def encoder(canonical: ChatRequest, estimate: int) -> StreamEncoder:
            return StreamEncoder(spec.id, input_tokens=estimate)

        opened = await chat.open_stream(principal, spec, ANTHROPIC, body, encoder, raw=raw, headers=headers)
        return EventStream(opened.chunks, opened.headers)
    done = await chat.complete(principal, spec, ANTHROPIC, body, raw=raw, headers=headers)
    if done.forwarded is not None:
        return Response(done.forwarded.body, media_type="application/json", headers=done.headers)
    assert done.response is not None
    return JsonResponse(anthropic.encode_response(done.response, spec.id), headers=done.headers)


@router.post(
    "/messages/count_tokens",
    response_model=TokenCount,
    openapi_extra=json_body(CountTokensRequest, parameters=ANTHROPIC_HEADERS),
)
async def count_tokens(principal: CurrentKey, services: ServicesDep, body: JsonBody) -> JsonResponse:
    """An estimate of the prompt's input tokens; free of charge."""
    model = fields.string(body, "model", required=True)
    assert model is not None
    services.catalog.resolve(model, ("llm",))
    request = anthropic.decode_request(body)
    return JsonResponse(anthropic.count_tokens_response(tokens.request_tokens(request)))
