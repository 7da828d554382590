"""The native chat endpoint of the docs: an OpenAI-shaped answer plus `creditsUsed`.

`model` may be left out; the first chat model a real upstream can serve is used then.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from hypereal.api.deps import CurrentKey, JsonBody, ServicesDep
from hypereal.api.openai import OPENAI_CHAT, event_stream
from hypereal.api.responses import JsonResponse
from hypereal.llm import fields, openai_chat
from hypereal.llm.gateway import gateway
from hypereal.llm.openai_chat_stream import StreamEncoder
from hypereal.llm.types import ChatRequest
from hypereal.units import to_credits

router = APIRouter(tags=["chat"])


@router.post("/chat")
async def chat(principal: CurrentKey, services: ServicesDep, request: Request, body: JsonBody) -> Response:
    """Chat with any catalog model; SSE when `stream` is true. Billed per token, 2 credits minimum."""
    gateway_ = gateway(services)
    model = fields.string(body, "model")
    spec = services.catalog.get(model, ("llm",)) if model else gateway_.default_model()
    body = {**body, "model": spec.id}
    raw_size = len(await request.body())
    if body.get("stream") is True:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def encoder(canonical: ChatRequest, estimate: int) -> StreamEncoder:
            return StreamEncoder(spec.id, include_usage=include_usage)

        chunks = await gateway_.open_stream(principal, spec, OPENAI_CHAT, body, encoder, raw_size=raw_size, headers={})
        return event_stream(chunks)
    done = await gateway_.complete(principal, spec, OPENAI_CHAT, body, raw_size=raw_size, headers={})
    credits = to_credits(done.cost)
    if done.forwarded is not None:
        return Response(orjson.dumps({**done.forwarded.payload, "creditsUsed": credits}), media_type="application/json")
    assert done.response is not None
    return JsonResponse(openai_chat.encode_response(done.response, spec.id, creditsUsed=credits))
