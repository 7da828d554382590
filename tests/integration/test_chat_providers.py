"""The chat providers against protocol doubles of OpenAI and Anthropic (and against nothing at all)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hypereal.catalog.providers import (
    AnthropicConfig,
    EchoConfig,
    OpenAICompatibleConfig,
    OpenAICompatibleOptions,
    OpenAIConfig,
)
from hypereal.errors import (
    BadRequest,
    ProviderRefused,
    UpstreamBusy,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTimeout,
)
from hypereal.llm import custom_tools
from hypereal.llm.types import (
    Accumulator,
    ChatRequest,
    ChatResponse,
    HostedTool,
    Message,
    StreamEnd,
    TextPart,
    ThinkingPart,
    Tool,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from hypereal.providers.anthropic import AnthropicProvider
from hypereal.providers.chat import ChatProvider
from hypereal.providers.echo import EchoProvider
from hypereal.providers.openai import OpenAIProvider
from hypereal.providers.openai_compatible import OpenAICompatibleProvider
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import OpenAIDouble

WEATHER = Tool(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)


@pytest.fixture
async def gpt() -> AsyncIterator[OpenAIDouble]:
    double = await OpenAIDouble().start()
    yield double
    await double.stop()


@pytest.fixture
async def claude() -> AsyncIterator[AnthropicDouble]:
    double = await AnthropicDouble().start()
    yield double
    await double.stop()


def request(text: str = "hi", **extra: Any) -> ChatRequest:
    return ChatRequest(model="upstream-model", messages=[Message("user", [TextPart(text)])], **extra)


async def collect(provider: ChatProvider, chat: ChatRequest) -> Accumulator:
    accumulator = Accumulator()
    async for event in provider.stream(chat):
        accumulator.add(event)
    return accumulator


@pytest.fixture
def openai_provider(gpt: OpenAIDouble, monkeypatch: pytest.MonkeyPatch) -> OpenAIProvider:
    monkeypatch.setenv("TEST_OPENAI_KEY", gpt.key)
    return OpenAIProvider(OpenAIConfig(api_key_env="TEST_OPENAI_KEY", base_url=gpt.url))


@pytest.fixture
def anthropic_provider(claude: AnthropicDouble, monkeypatch: pytest.MonkeyPatch) -> AnthropicProvider:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", claude.key)
    return AnthropicProvider(AnthropicConfig(api_key_env="TEST_ANTHROPIC_KEY", base_url=claude.url))


async def test_openai_complete_and_stream_with_usage(openai_provider: OpenAIProvider, gpt: OpenAIDouble) -> None:
    response = await openai_provider.complete(request(max_tokens=20))
    assert response.text() == "Hello from OpenAI: hi"
    assert response.usage.input_tokens == 11
    assert gpt.requests[-1].body["max_completion_tokens"] == 20
    streamed = await collect(openai_provider, request())
    assert streamed.response().text() == "Hello from OpenAI: hi"
    assert streamed.usage == Usage(input_tokens=11, output_tokens=5)
    assert gpt.requests[-1].body["stream_options"] == {"include_usage": True}
    await openai_provider.close()


async def test_openai_tool_round_trip(openai_provider: OpenAIProvider, gpt: OpenAIDouble) -> None:
    first = await collect(openai_provider, request("please call it", tools=[WEATHER]))
    call = first.response().content[0]
    assert isinstance(call, ToolUsePart) and call.input() == {"city": "Paris"}
    assert first.stop_reason == "tool_use"
    follow_up = request("please call it", tools=[WEATHER])
    follow_up.messages += [Message("assistant", [call]), Message("user", [ToolResultPart(call.id, [TextPart("21C")])])]
    answer = await openai_provider.complete(follow_up)
    assert answer.text() == "The tool said 21C"
    sent = gpt.requests[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "21C"}
    await openai_provider.close()


async def test_codex_models_go_to_the_responses_api(openai_provider: OpenAIProvider, gpt: OpenAIDouble) -> None:
    codex = ChatRequest(model="gpt-5-codex", messages=[Message("user", [TextPart("hi")])])
    response = await openai_provider.complete(codex)
    assert gpt.requests[-1].path == "/v1/responses"
    assert response.text() == "Hello from OpenAI: hi"
    streamed = await collect(openai_provider, codex)
    assert streamed.response().text() == "Hello from OpenAI: hi"
    assert streamed.usage is not None and streamed.usage.input_tokens == 11
    await openai_provider.close()


async def test_anthropic_stream_keeps_thinking_signature_and_cached_usage(
    anthropic_provider: AnthropicProvider, claude: AnthropicDouble
) -> None:
    streamed = await collect(anthropic_provider, request(thinking_budget=2048, max_tokens=4096))
    content = streamed.response().content
    assert isinstance(content[0], ThinkingPart) and content[0].signature
    assert streamed.usage == Usage(input_tokens=11, output_tokens=5, cached_input_tokens=3)
    sent = claude.requests[-1]
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent.headers["anthropic-version"] == "2023-06-01"
    await anthropic_provider.close()


async def test_anthropic_tool_call_and_empty_text_blocks_dropped(
    anthropic_provider: AnthropicProvider, claude: AnthropicDouble
) -> None:
    chat = request("please call the tool", tools=[WEATHER])
    chat.messages.insert(0, Message("assistant", [TextPart("")]))
    chat.messages.insert(0, Message("user", [TextPart("earlier")]))
    response = await anthropic_provider.complete(chat)
    assert response.stop_reason == "tool_use"
    assert all(block.get("text") != "" for m in claude.requests[-1].body["messages"] for block in m["content"])
    await anthropic_provider.close()


async def test_forwarding_returns_the_upstream_bytes(anthropic_provider: AnthropicProvider) -> None:
    body = {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    answer = await anthropic_provider.forward("anthropic-messages", body, {"anthropic-beta": "b1"})
    assert answer.payload["content"][0]["text"] == "Hello from Claude: hi"
    assert b"Hello from Claude" in answer.body
    batches = anthropic_provider.forward_stream("anthropic-messages", {**body, "stream": True}, {})
    events = [event async for batch in batches for event in batch]
    assert events[0].event == "message_start" and events[-1].event == "message_stop"
    await anthropic_provider.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (404, UpstreamNotFound),
        (429, UpstreamBusy),
        (529, UpstreamBusy),
        (500, UpstreamError),
        (403, ProviderRefused),
    ],
)
async def test_upstream_statuses_are_translated_once(
    anthropic_provider: AnthropicProvider, claude: AnthropicDouble, status: int, error: type[Exception]
) -> None:
    claude.fail_next(status)
    with pytest.raises(error) as raised:
        await anthropic_provider.complete(request())
    assert type(raised.value) is error
    claude.fail_next(status)
    with pytest.raises(error):
        await collect(anthropic_provider, request())
    await anthropic_provider.close()


async def test_wrong_credentials_are_a_gateway_error_not_the_client_s(gpt: OpenAIDouble) -> None:
    provider = OpenAIProvider(OpenAIConfig(base_url=gpt.url))
    with pytest.raises(ProviderRefused) as raised:
        await provider.complete(request())
    assert raised.value.status == 400 and "credentials" in raised.value.message
    await provider.close()


async def test_unreachable_upstream_is_an_upstream_error() -> None:
    provider = OpenAICompatibleProvider(OpenAICompatibleConfig(base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(UpstreamError):
        await provider.complete(request())
    await provider.close()


async def test_silent_upstream_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = OpenAICompatibleConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_seconds=0.2)
    provider = OpenAICompatibleProvider(config)
    with pytest.raises(UpstreamTimeout):
        await provider.complete(request())
    await provider.close()
    server.close()


async def test_openai_compatible_sends_max_tokens_and_forwards_only_chat(
    gpt: OpenAIDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_COMPAT_KEY", gpt.key)
    config = OpenAICompatibleConfig(api_key_env="TEST_COMPAT_KEY", base_url=gpt.url)
    provider = OpenAICompatibleProvider(config)
    assert provider.forwards("openai-chat", "m") and not provider.forwards("openai-responses", "m")
    codex_named = ChatRequest(model="my-codex", messages=[Message("user", [TextPart("hi")])], max_tokens=7)
    answer = await provider.complete(codex_named)
    assert answer.text() == "Hello from OpenAI: hi"
    sent = gpt.requests[-1]
    assert sent.path == "/v1/chat/completions", "no model of a compatible server is sent to /responses by default"
    assert sent.body["max_tokens"] == 7 and "max_completion_tokens" not in sent.body
    responses = OpenAICompatibleOptions(responses=True)
    with_responses = OpenAICompatibleProvider(config.model_copy(update={"options": responses}))
    assert with_responses.forwards("openai-responses", "m")
    await provider.close()


async def test_openai_gets_custom_tools_natively_and_compatible_servers_as_functions(
    openai_provider: OpenAIProvider, gpt: OpenAIDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch = Tool("apply_patch", "Edits files", kind="custom", format={"type": "text"})
    web_search = HostedTool({"type": "web_search"}, "tools.1")
    await openai_provider.complete(request(tools=[patch]))
    assert gpt.requests[-1].body["tools"] == [
        {"type": "custom", "custom": {"name": "apply_patch", "description": "Edits files", "format": {"type": "text"}}}
    ]
    await openai_provider.complete(request(tools=[patch], hosted_tools=[web_search]))
    sent = gpt.requests[-1]
    assert sent.path == "/v1/responses", "only the Responses API runs web search"
    assert sent.body["tools"] == [
        {"type": "custom", "name": "apply_patch", "description": "Edits files", "format": {"type": "text"}},
        {"type": "web_search"},
    ]

    monkeypatch.setenv("TEST_COMPAT_KEY", gpt.key)
    compatible = OpenAICompatibleProvider(OpenAICompatibleConfig(api_key_env="TEST_COMPAT_KEY", base_url=gpt.url))
    await compatible.complete(request(tools=[patch]))
    (offered,) = gpt.requests[-1].body["tools"]
    assert offered["type"] == "function" and offered["function"]["parameters"] == custom_tools.INPUT_SCHEMA
    searching = request(tools=[patch], hosted_tools=[web_search])
    await compatible.complete(searching)
    sent = gpt.requests[-1]
    assert sent.path == "/v1/chat/completions" and "web_search_options" not in sent.body
    assert searching.dropped == ["tools[1]:web_search"], "a compatible server runs no web search"
    refused = compatible.refusal(searching)
    assert refused is not None and refused.fields == {"field": "tools.1"}
    await openai_provider.close()
    await compatible.close()


async def test_stream_cut_mid_way_raises_after_the_partial_output(
    openai_provider: OpenAIProvider, gpt: OpenAIDouble
) -> None:
    gpt.cut_after(3)
    accumulator = Accumulator()
    with pytest.raises(UpstreamError):
        async for event in openai_provider.stream(request()):
            accumulator.add(event)
    assert accumulator.output_chars > 0 and not accumulator.ended
    await openai_provider.close()


async def test_echo_is_deterministic_and_reports_usage() -> None:
    echo = EchoProvider(EchoConfig())
    first = await echo.complete(request("one two three"))
    second = await collect(echo, request("one two three"))
    assert first.text() == second.response().text() == "one two three"
    assert first.usage == second.usage and first.usage.output_tokens == 4
    limited = await echo.complete(request("one two three four five six", max_tokens=2))
    assert limited.stop_reason == "max_tokens" and limited.text() == "one two "
    stopped = await echo.complete(request("alpha STOP beta", stop=["STOP"]))
    assert stopped.text() == "alpha " and stopped.stop_reason == "stop_sequence"
    tooled = await echo.complete(request("what is the weather", tools=[WEATHER]))
    assert tooled.stop_reason == "end_turn", "no tool call unless asked"
    named = await echo.complete(request("use get_weather", tools=[WEATHER]))
    assert named.stop_reason == "tool_use"
    call = named.content[0]
    assert isinstance(call, ToolUsePart) and call.input() == {"city": "use get_weather"}
    events = [event async for event in echo.stream(request("a b c"))]
    assert isinstance(events[-1], StreamEnd)
    assert sum(1 for event in events if type(event).__name__ == "TextDelta") == 3


SCRIPTED = 'Now call get_weather with {"city": "Zürich", "days": [1, 2], "detail": {"wind": true}} please'
"""A scripted call (`hypereal.providers.echo.scripted_call`): its arguments differ from the doubles' default call."""


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("upstream", ["chat-completions", "responses", "anthropic"])
async def test_the_doubles_make_exactly_the_scripted_call_then_report_its_result(
    upstream: str, stream: bool, openai_provider: OpenAIProvider, anthropic_provider: AnthropicProvider
) -> None:
    provider: ChatProvider = anthropic_provider if upstream == "anthropic" else openai_provider
    model = "gpt-5-codex" if upstream == "responses" else "upstream-model"
    other = Tool("get_time", "Time", {"type": "object", "properties": {}})

    async def answer(chat: ChatRequest) -> ChatResponse:
        return (await collect(provider, chat)).response() if stream else await provider.complete(chat)

    chat = ChatRequest(model=model, messages=[Message("user", [TextPart(SCRIPTED)])], tools=[other, WEATHER])
    first = await answer(chat)

    call = first.content[-1]
    assert isinstance(call, ToolUsePart) and call.name == "get_weather"
    assert call.input() == {"city": "Zürich", "days": [1, 2], "detail": {"wind": True}}
    chat.messages += [
        Message("assistant", [call]),
        Message("user", [ToolResultPart(call.id, [TextPart("hypereal-42")])]),
    ]
    assert (await answer(chat)).text() == "The tool said hypereal-42"
    await provider.close()
