"""The chat surfaces' bodies as the OpenAPI document describes them: native /chat, OpenAI, Anthropic.

Like api/schemas.py these document and do not parse: the chat endpoints read their JSON
themselves (llm/ owns the codecs), so FastAPI's body parsing stays off the busiest path.

Rules they follow:
- Each surface is described in its vendor's terms, as far as the codecs read it; every
  model allows fields it does not list, since clients send (and upstreams answer) fields
  newer than any description, and those are forwarded or dropped, never refused.
- A bound is given where the codecs enforce it (`n`, the token limits); sampling numbers
  such as `temperature` are passed to the upstream, which judges them.
- Errors take the surface's vendor shape (`OpenAIError`, `AnthropicError`).
- Streams are `text/event-stream`; each event's schema says what its `data` carries.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hypereal.api.schemas import PROVIDER_DESCRIPTION, ProviderPreferences
from hypereal.bounds import CHAT_NUMBER_RANGES, MAX_CHAT_INTEGER
from hypereal.llm.openai_chat import MAX_CHOICES

Open = ConfigDict(extra="allow")

TEMPERATURE = CHAT_NUMBER_RANGES["temperature"]
TOP_P = CHAT_NUMBER_RANGES["top_p"]


def _open_with_examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": list(examples)})


# ---------------------------------------------------------------- errors


class OpenAIErrorDetail(BaseModel):
    model_config = Open

    message: str
    type: str = Field(description="`invalid_request_error`, `insufficient_quota`, `rate_limit_error`, ...")
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """Errors of the OpenAI surfaces (`/chat/completions`, `/responses`) and of native `/chat`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "message": "Model is required",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": None,
                    }
                }
            ]
        }
    )

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str = Field(description="`invalid_request_error`, `authentication_error`, `billing_error`, ...")
    message: str


class AnthropicError(BaseModel):
    """Errors of the Anthropic surface (`/messages`, `/messages/count_tokens`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "error", "error": {"type": "invalid_request_error", "message": "Model is required"}}]
        }
    )

    type: Literal["error"]
    error: AnthropicErrorDetail


# ---------------------------------------------------------------- OpenAI Chat Completions


class ChatMessage(BaseModel):
    model_config = Open

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = Field(
        default=None, description="Text, or content parts (`text`, `image_url`)."
    )
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = Open

    include_usage: bool | None = None


class ChatBody(BaseModel):
    """What Chat Completions and native /chat bodies share."""

    model_config = Open

    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=MAX_CHAT_INTEGER, description="Clamped to the model's maximum."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_CHAT_INTEGER, description="The older name of `max_completion_tokens`."
    )
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    temperature: float | None = Field(default=None, ge=TEMPERATURE[0], le=TEMPERATURE[1])
    top_p: float | None = Field(default=None, ge=TOP_P[0], le=TOP_P[1])
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    provider: ProviderPreferences | None = Field(default=None, description=PROVIDER_DESCRIPTION)


class ChatCompletionRequest(ChatBody):
    model_config = _open_with_examples(
        {"model": "gpt-5", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]},
        {"model": "local-echo", "messages": [{"role": "user", "content": "Hello!"}]},
    )

    model: str = Field(min_length=1)


class NativeChatRequest(ChatBody):
    """The Chat Completions body; `model` may be left out (the first chat model a provider can serve)."""

    model_config = _open_with_examples(
        {"messages": [{"role": "user", "content": "Hello, how are you?"}], "stream": False},
        {"model": "local-echo", "messages": [{"role": "user", "content": "Hi!"}], "stream": True},
    )

    model: str | None = Field(default=None, min_length=1)


class CompletionMessage(BaseModel):
    model_config = Open

    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    reasoning_content: str | None = Field(default=None, description="The model's thinking, where it shows it.")
    tool_calls: list[dict[str, Any]] | None = None


class CompletionChoice(BaseModel):
    model_config = Open

    index: int = Field(ge=0)
    message: CompletionMessage
    finish_reason: str | None


class CompletionUsage(BaseModel):
    model_config = Open

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class ChatCompletion(BaseModel):
    model_config = _open_with_examples(
        {
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1766841456,
            "model": "gpt-5",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! I'm doing great..."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
        }
    )

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


class NativeChatCompletion(ChatCompletion):
    """A Chat Completions answer with the credits the call cost."""

    model_config = _open_with_examples(
        {
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1766841456,
            "model": "local-echo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! I'm doing great..."},
                    "finish_reason": "stop",
                }
            ],
            "creditsUsed": 2,
        }
    )

    creditsUsed: float = Field(ge=0)


class ChatCompletionChunk(BaseModel):
    """One event of a Chat Completions stream; native /chat adds `creditsUsed` to the last one."""

    model_config = Open

    id: str
    object: Literal["chat.completion.chunk"]
    created: int | None = None
    model: str
    choices: list[dict[str, Any]]
    usage: CompletionUsage | None = None
    creditsUsed: float | None = Field(default=None, ge=0)


# ---------------------------------------------------------------- OpenAI Responses


class Reasoning(BaseModel):
    model_config = Open

    effort: str | None = None


class ResponsesRequest(BaseModel):
    model_config = _open_with_examples(
        {"model": "gpt-5-codex", "input": "Write a haiku about the sea.", "stream": True},
        {
            "model": "local-echo",
            "instructions": "Answer briefly.",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}],
        },
    )

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = Field(default=None, description="Text, or input items.")
    instructions: str | None = None
    provider: ProviderPreferences | None = Field(default=None, description=PROVIDER_DESCRIPTION)
    previous_response_id: str | None = Field(
        default=None, description="Continue a stored response (404 if it is not the caller's)."
    )
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(
        default=None, ge=1, le=MAX_CHAT_INTEGER, description="Clamped to the model's maximum."
    )
    temperature: float | None = Field(default=None, ge=TEMPERATURE[0], le=TEMPERATURE[1])
    top_p: float | None = Field(default=None, ge=TOP_P[0], le=TOP_P[1])
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    text: dict[str, Any] | None = None
    user: str | None = None


class ResponsesUsage(BaseModel):
    model_config = Open

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class ResponseObject(BaseModel):
    """A Responses API answer."""

    model_config = _open_with_examples(
        {
            "id": "resp_b6fc83a29d0b3dd4e083d3fd",
            "object": "response",
            "created_at": 1766841456,
            "status": "completed",
            "model": "local-echo",
            "output": [
                {
                    "id": "msg_2a71faaf718101be9145c411",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
                }
            ],
            "usage": {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11},
        }
    )

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]] = Field(description="Output items: `message`, `function_call`, `reasoning`, ...")
    usage: ResponsesUsage | None = None


class ResponsesEvent(BaseModel):
    """One event of a Responses stream, named by its `type` (`response.output_text.delta`, `error`, ...)."""

    model_config = Open

    type: str


# ---------------------------------------------------------------- Anthropic Messages


class AnthropicMessageParam(BaseModel):
    model_config = Open

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]] = Field(
        description="Text, or content blocks (`text`, `image`, `tool_use`, `tool_result`, `thinking`)."
    )


class Thinking(BaseModel):
    model_config = Open

    type: str = Field(description="`enabled` (with `budget_tokens`), `adaptive` or `disabled`.")
    budget_tokens: int | None = Field(default=None, ge=1, le=MAX_CHAT_INTEGER)


class CountTokensRequest(BaseModel):
    model_config = _open_with_examples(
        {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "Hello!"}]}
    )

    model: str = Field(min_length=1)
    messages: list[AnthropicMessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: Thinking | None = None


class MessagesRequest(CountTokensRequest):
    model_config = _open_with_examples(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "Hello!"}],
        },
        {"model": "local-echo", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}]},
    )

    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_CHAT_INTEGER, description="Clamped to the model's maximum."
    )
    stream: bool = False
    temperature: float | None = Field(default=None, ge=TEMPERATURE[0], le=TEMPERATURE[1])
    top_p: float | None = Field(default=None, ge=TOP_P[0], le=TOP_P[1])
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    provider: ProviderPreferences | None = Field(default=None, description=PROVIDER_DESCRIPTION)


class AnthropicUsage(BaseModel):
    model_config = Open

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)


class AnthropicMessage(BaseModel):
    model_config = _open_with_examples(
        {
            "id": "msg_2b440a01d92105f6735bf460",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [{"type": "text", "text": "Hello! How can I help?"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 7},
        }
    )

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]] = Field(description="Blocks: `text`, `tool_use`, `thinking`, ...")
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: AnthropicUsage


class AnthropicEvent(BaseModel):
    """One event of a Messages stream (`message_start`, `content_block_delta`, `error`, ...)."""

    model_config = Open

    type: str


class TokenCount(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"input_tokens": 9}]})

    input_tokens: int = Field(ge=0)
