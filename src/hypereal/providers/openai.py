"""OpenAI upstream: Chat Completions, and the Responses API for models served only there.

Canonical requests go to Chat Completions unless the upstream model matches one of the
`responses_models` patterns (provider option; by default the codex, pro and deep-research
models, which OpenAI serves only through the Responses API) or they carry a hosted tool,
which only the Responses API runs. The exception is web search on a search model (option
`search_models`; by default the `*-search-preview` and `*-search-api` models), which OpenAI
serves only through Chat Completions, where it takes `web_search_options`.

For the same reason a Chat Completions client that asks any other model for a web search
(`web_search_options`) is translated to the Responses API rather than forwarded; that API
has no `n`, so several choices there take one call each.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

from hypereal.catalog.providers import OpenAICompatibleConfig, OpenAIConfig
from hypereal.errors import ValidationFailed
from hypereal.llm import openai_chat, openai_responses, sse
from hypereal.llm.custom_tools import custom_tool_names
from hypereal.llm.openai_chat_stream import StreamDecoder as ChatStreamDecoder
from hypereal.llm.openai_responses_stream import StreamDecoder as ResponsesStreamDecoder
from hypereal.llm.types import ChatRequest, ChatResponse, StreamEvent
from hypereal.providers.chat import Forwarded, HttpChatProvider, Protocol

PATHS: dict[str, str] = {"openai-chat": "/chat/completions", "openai-responses": "/responses"}


class OpenAIProvider(HttpChatProvider):
    type: ClassVar[str] = "openai"
    passthrough: ClassVar[frozenset[Protocol]] = frozenset({"openai-chat", "openai-responses"})
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    config: OpenAIConfig | OpenAICompatibleConfig

    def __init__(self, config: OpenAIConfig | OpenAICompatibleConfig) -> None:
        super().__init__(config)
        self.responses_models = config.options.responses_models
        self.search_models = config.options.search_models
        # Asked several times per call, of the few upstream models the catalog routes here.
        self._responses_by_model: dict[str, bool] = {}
        self._search_by_model: dict[str, bool] = {}
        self.native_custom_tools = config.options.custom_tools

    def headers(self) -> dict[str, str]:
        key = self.config.api_key()
        return {"authorization": f"Bearer {key}"} if key else {}

    def uses_responses(self, model: str) -> bool:
        return _matches(model, self.responses_models, self._responses_by_model)

    def searches_in_chat(self, model: str) -> bool:
        """Whether `model` is a search model, which searches behind Chat Completions."""
        return _matches(model, self.search_models, self._search_by_model)

    def _on_responses(self, model: str, hosted_tools: bool) -> bool:
        """Whether a request for `model` (with hosted tools or not) goes to the Responses API."""
        if self.uses_responses(model):
            return True
        return hosted_tools and not self.searches_in_chat(model) and self.forwards("openai-responses", model)

    def forwards(self, protocol: Protocol, model: str, body: dict[str, Any] | None = None) -> bool:
        if not super().forwards(protocol, model):
            return False
        # A Chat Completions body goes to the Responses API, translated, when that API is what runs it.
        searches = body is not None and body.get("web_search_options") is not None
        return protocol != "openai-chat" or not self._on_responses(model, searches)

    def native_choices(self, model: str, hosted_tools: bool = False) -> bool:
        # The Responses API has no `n`.
        return not self._on_responses(model, hosted_tools)

    def refusal(self, request: ChatRequest) -> ValidationFailed | None:
        if not request.hosted_tools:
            return None
        if self._on_responses(request.model, True):
            return openai_responses.refusal(request)
        return openai_chat.refusal(request, searches=self.searches_in_chat(request.model))

    def _responses_for(self, request: ChatRequest) -> bool:
        return self._on_responses(request.model, bool(request.hosted_tools))

    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        return openai_chat.encode_request(
            request,
            max_tokens_field=self.max_tokens_field,
            native_custom=self.native_custom_tools,
            searches=self.searches_in_chat(request.model),
        )

    def _wrapped(self, request: ChatRequest) -> frozenset[str]:
        """The custom tools offered as functions, whose calls are unwrapped."""
        return frozenset() if self.native_custom_tools else custom_tool_names(request)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._responses_for(request):
            body = openai_responses.encode_request(_one_shot(request))
            answer = await self.post_json(PATHS["openai-responses"], body)
            return openai_responses.decode_response(answer.payload)
        answer = await self.post_json(PATHS["openai-chat"], self._chat_body(_one_shot(request)))
        return openai_chat.decode_response(answer.payload, self._wrapped(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        streaming = _streaming(request)
        if self._responses_for(request):
            responses = ResponsesStreamDecoder()
            async for event in self.post_events(PATHS["openai-responses"], openai_responses.encode_request(streaming)):
                for decoded in responses.feed(event.event, event.data):
                    yield decoded
            for decoded in responses.finish():
                yield decoded
            return
        chat = ChatStreamDecoder(self._wrapped(request), choices=streaming.n)
        async for event in self.post_events(PATHS["openai-chat"], self._chat_body(streaming)):
            for decoded in chat.feed(event.data):
                yield decoded
        for decoded in chat.finish():
            yield decoded

    async def forward(self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]) -> Forwarded:
        return await self.post_json(PATHS[protocol], body)

    def forward_stream(
        self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[list[sse.Event]]:
        return self.post_event_batches(PATHS[protocol], body)


def _one_shot(request: ChatRequest) -> ChatRequest:
    return replace(request, stream=False) if request.stream else request


def _streaming(request: ChatRequest) -> ChatRequest:
    return request if request.stream else replace(request, stream=True)


def _matches(model: str, patterns: tuple[str, ...], known: dict[str, bool]) -> bool:
    """Whether `model` matches one of `patterns`, remembered in `known`."""
    found = known.get(model)
    if found is None:
        found = known[model] = any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)
    return found
