"""The official OpenAI and Anthropic SDKs against a running server, for every surface × upstream pair.

The server (`hypereal serve` in a subprocess) has an operator catalog that adds three
models: `double-gpt` on an OpenAI double, `double-claude` on an Anthropic double and
`double-compat` on an OpenAI-compatible route to the OpenAI double, beside the built-in
`local-echo`. Each test asks one surface (Chat Completions, Responses, Messages), sync or
async, streaming or not, for a plain answer and for a tool call, and checks the answer the
SDK parsed. Same-protocol pairs are forwarded; every other pair is translated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble

PROMPT = "Hello gateway"
TOOL_PROMPT = "Please call get_weather for me"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
EXPECTED_TEXT = {
    "local-echo": PROMPT,
    "double-gpt": f"Hello from OpenAI: {PROMPT}",
    "double-compat": f"Hello from OpenAI: {PROMPT}",
    "double-claude": f"Hello from Claude: {PROMPT}",
}
EXPECTED_CITY = {"local-echo": TOOL_PROMPT, "double-gpt": "Paris", "double-compat": "Paris", "double-claude": "Paris"}
MODELS = list(EXPECTED_TEXT)


def _catalog(openai_url: str, anthropic_url: str) -> str:
    model = (
        "  - id: {id}\n    category: llm\n    name: {id}\n    description: A test model.\n"
        "    context_window: 100000\n    max_output_tokens: 1000\n"
        "    pricing: {{input_per_mtok: 100, output_per_mtok: 400, cached_input_per_mtok: 10}}\n"
        "    routes:\n      - {{provider: {provider}, model: upstream-{id}}}\n"
    )
    return (
        "providers:\n"
        f"  dbl-openai: {{type: openai, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{openai_url}'}}\n"
        f"  dbl-anthropic: {{type: anthropic, api_key_env: DOUBLE_ANTHROPIC_KEY, base_url: '{anthropic_url}'}}\n"
        f"  dbl-compat: {{type: openai-compatible, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{openai_url}'}}\n"
        "models:\n"
        + model.format(id="double-gpt", provider="dbl-openai")
        + model.format(id="double-claude", provider="dbl-anthropic")
        + model.format(id="double-compat", provider="dbl-compat")
    )


@dataclass
class Stack:
    server: Server
    key: str
    openai_double: OpenAIDouble
    anthropic_double: AnthropicDouble

    @property
    def api(self) -> str:
        return self.server.url + "/api/v1"

    def balance(self) -> float:
        answer = httpx.get(self.api + "/account", headers={"Authorization": f"Bearer {self.key}"})
        return float(answer.json()["balance"])


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with BackgroundServer(OpenAIDouble()) as gpt, BackgroundServer(AnthropicDouble()) as claude:
        catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
        catalog.write_text(_catalog(gpt.url, claude.url))
        server = start_server(
            env={"HYPEREAL_CATALOG": str(catalog), "DOUBLE_OPENAI_KEY": gpt.key, "DOUBLE_ANTHROPIC_KEY": claude.key}
        )
        account = httpx.post(
            server.url + "/api/v1/admin/accounts", json={"name": "sdk", "credits": 100000}, headers=ADMIN_HEADERS
        ).json()
        key = httpx.post(
            server.url + f"/api/v1/admin/accounts/{account['id']}/keys", json={}, headers=ADMIN_HEADERS
        ).json()["key"]
        yield Stack(server, key, gpt, claude)


# ---------------------------------------------------------------- one call per surface


@dataclass
class Answer:
    text: str = ""
    tool: str | None = None
    tool_input: dict[str, Any] | None = None


def _chat_kwargs(model: str, tools: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": TOOL_PROMPT if tools else PROMPT}],
    }
    if tools:
        kwargs["tools"] = [{"type": "function", "function": WEATHER_TOOL}]
    return kwargs


def _responses_kwargs(model: str, tools: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": model, "input": TOOL_PROMPT if tools else PROMPT, "instructions": "Be brief."}
    if tools:
        kwargs["tools"] = [{"type": "function", **WEATHER_TOOL}]
    return kwargs


def _messages_kwargs(model: str, tools: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": TOOL_PROMPT if tools else PROMPT}],
    }
    if tools:
        kwargs["tools"] = [
            {"name": WEATHER_TOOL["name"], "description": "Weather", "input_schema": WEATHER_TOOL["parameters"]}
        ]
    return kwargs


def _from_chat(message: Any) -> Answer:
    answer = Answer(text=message.content or "")
    if message.tool_calls:
        call = message.tool_calls[0]
        answer.tool, answer.tool_input = call.function.name, json.loads(call.function.arguments)
    return answer


def _from_response(response: Any) -> Answer:
    answer = Answer(text=response.output_text)
    for item in response.output:
        if item.type == "function_call":
            answer.tool, answer.tool_input = item.name, json.loads(item.arguments)
    return answer


def _from_message(message: Any) -> Answer:
    answer = Answer(text="".join(block.text for block in message.content if block.type == "text"))
    for block in message.content:
        if block.type == "tool_use":
            answer.tool, answer.tool_input = block.name, dict(block.input)
    return answer


def call_sync(stack: Stack, surface: str, model: str, stream: bool, tools: bool) -> Answer:
    if surface == "chat":
        client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
        if not stream:
            return _from_chat(client.chat.completions.create(**_chat_kwargs(model, tools)).choices[0].message)
        with client.chat.completions.stream(**_chat_kwargs(model, tools)) as events:
            return _from_chat(events.get_final_completion().choices[0].message)
    if surface == "responses":
        client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
        if not stream:
            return _from_response(client.responses.create(**_responses_kwargs(model, tools)))
        with client.responses.stream(**_responses_kwargs(model, tools)) as events:
            return _from_response(events.get_final_response())
    claude = anthropic.Anthropic(base_url=stack.server.url + "/api", api_key=stack.key, max_retries=0)
    if not stream:
        return _from_message(claude.messages.create(**_messages_kwargs(model, tools)))
    with claude.messages.stream(**_messages_kwargs(model, tools)) as events:
        return _from_message(events.get_final_message())


async def call_async(stack: Stack, surface: str, model: str, stream: bool, tools: bool) -> Answer:
    if surface == "chat":
        client = openai.AsyncOpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
        if not stream:
            completion = await client.chat.completions.create(**_chat_kwargs(model, tools))
            return _from_chat(completion.choices[0].message)
        async with client.chat.completions.stream(**_chat_kwargs(model, tools)) as events:
            return _from_chat((await events.get_final_completion()).choices[0].message)
    if surface == "responses":
        client = openai.AsyncOpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
        if not stream:
            return _from_response(await client.responses.create(**_responses_kwargs(model, tools)))
        async with client.responses.stream(**_responses_kwargs(model, tools)) as events:
            return _from_response(await events.get_final_response())
    claude = anthropic.AsyncAnthropic(base_url=stack.server.url + "/api", api_key=stack.key, max_retries=0)
    if not stream:
        return _from_message(await claude.messages.create(**_messages_kwargs(model, tools)))
    async with claude.messages.stream(**_messages_kwargs(model, tools)) as events:
        return _from_message(await events.get_final_message())


SURFACES = ["chat", "responses", "messages"]


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("surface", SURFACES)
def test_sync_text(stack: Stack, surface: str, model: str, stream: bool) -> None:
    before = stack.balance()
    answer = call_sync(stack, surface, model, stream, tools=False)
    assert answer.text == EXPECTED_TEXT[model]
    assert answer.tool is None
    spent = before - stack.balance()
    assert 2 <= spent < 10, "billed the per-message minimum, not the reservation"


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("surface", SURFACES)
def test_sync_tool_call(stack: Stack, surface: str, model: str, stream: bool) -> None:
    answer = call_sync(stack, surface, model, stream, tools=True)
    assert answer.tool == "get_weather"
    assert answer.tool_input == {"city": EXPECTED_CITY[model]}
    assert answer.text == ""


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("surface", SURFACES)
async def test_async_text_and_tools(stack: Stack, surface: str, model: str, stream: bool) -> None:
    plain, tooled = await asyncio.gather(
        call_async(stack, surface, model, stream, tools=False), call_async(stack, surface, model, stream, tools=True)
    )
    assert plain.text == EXPECTED_TEXT[model] and plain.tool is None
    assert tooled.tool == "get_weather" and tooled.tool_input == {"city": EXPECTED_CITY[model]}
