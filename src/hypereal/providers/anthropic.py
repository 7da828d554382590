"""Anthropic upstream: the Messages API.

Forwarded requests keep the client's `anthropic-beta` header, which switches on features
(interleaved thinking, fine-grained tool streaming) Claude Code relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

from hypereal.catalog.providers import AnthropicConfig
from hypereal.errors import ValidationFailed
from hypereal.llm import anthropic, sse
from hypereal.llm.anthropic_stream import StreamDecoder
from hypereal.llm.custom_tools import custom_tool_names
from hypereal.llm.types import ChatRequest, ChatResponse, StreamEvent
from hypereal.providers.chat import Forwarded, HttpChatProvider, Protocol

MESSAGES_PATH = "/v1/messages"


class AnthropicProvider(HttpChatProvider):
    type: ClassVar[str] = "anthropic"
    passthrough: ClassVar[frozenset[Protocol]] = frozenset({"anthropic-messages"})
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    config: AnthropicConfig

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.config.options.anthropic_version}
        key = self.config.api_key()
        if key:
            headers["x-api-key"] = key
        return headers

    def refusal(self, request: ChatRequest) -> ValidationFailed | None:
        return anthropic.refusal(request)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        default = self.config.options.default_max_tokens or anthropic.DEFAULT_MAX_TOKENS
        return anthropic.encode_request(request, default_max_tokens=default)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        answer = await self.post_json(MESSAGES_PATH, self._body(replace(request, stream=False)))
        return anthropic.decode_response(answer.payload, custom_tool_names(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        decoder = StreamDecoder(custom_tool_names(request))
        async for event in self.post_events(MESSAGES_PATH, self._body(replace(request, stream=True))):
            for decoded in decoder.feed(event.event, event.data):
                yield decoded
        for decoded in decoder.finish():
            yield decoded

    async def forward(self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]) -> Forwarded:
        return await self.post_json(MESSAGES_PATH, body, _beta(headers))

    def forward_stream(
        self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[list[sse.Event]]:
        return self.post_event_batches(MESSAGES_PATH, body, _beta(headers))


def _beta(headers: dict[str, str]) -> dict[str, str]:
    beta = headers.get("anthropic-beta")
    return {"anthropic-beta": beta} if beta else {}
