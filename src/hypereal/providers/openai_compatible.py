"""Any server that speaks OpenAI's Chat Completions: vLLM, Ollama, llama.cpp, OpenRouter, Together…

Configured in an operator's catalog with its `base_url` (ending where `/chat/completions`
is appended, usually `/v1`) and, when it needs one, `api_key_env`. Such servers take
`max_tokens` rather than OpenAI's newer `max_completion_tokens`, and few implement the
Responses API, so Responses clients are translated unless the option `responses: true`
says the server has it. Few know custom (freeform) tools either: they are offered as
functions unless the option `custom_tools: true` says the server has them. None is taken
for a search model unless named in the option `search_models`; a Chat Completions body is
always forwarded as it came, `web_search_options` included, for the server to judge.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypereal.catalog.providers import OpenAICompatibleConfig
from hypereal.providers.chat import Protocol
from hypereal.providers.openai import OpenAIProvider


class OpenAICompatibleProvider(OpenAIProvider):
    type: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""
    max_tokens_field: ClassVar[str] = "max_tokens"
    config: OpenAICompatibleConfig

    def __init__(self, config: OpenAICompatibleConfig) -> None:
        super().__init__(config)
        self.speaks_responses = config.options.responses

    passthrough: ClassVar[frozenset[Protocol]] = frozenset({"openai-chat"})

    def forwards(self, protocol: Protocol, model: str, body: dict[str, Any] | None = None) -> bool:
        return protocol == "openai-chat" or (protocol == "openai-responses" and self.speaks_responses)
