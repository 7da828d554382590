"""The official OpenAI and Anthropic SDKs against a running server, for every surface × upstream pair.

The server (`hypereal serve` in a subprocess) has an operator catalog that adds three
models: `double-gpt` on an OpenAI double, `double-claude` on an Anthropic double and
`double-compat` on an OpenAI-compatible route to the OpenAI double, beside the built-in
`local-echo` (and `double-search`, the OpenAI double's search model, for web search behind
Chat Completions). Each test asks one surface (Chat Completions, Responses, Messages), sync
or async, streaming or not, for a plain answer and for a tool call, and checks the answer
the SDK parsed. Same-protocol pairs are forwarded; every other pair is translated. Codex's
tools follow: its `apply_patch` custom tool and OpenAI's web search on a Claude model, and
the hosted tools that no translated route can run. Claude Code's close the file: Anthropic's
web search, bash and text editor on OpenAI models, and web search citations in Chat
Completions streams. A hosted tool a route cannot run is dropped and named in the
`x-hypereal-dropped` header, unless the client forces it: that is a 400.
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

from hypereal.llm import anthropic_tools, custom_tools
from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles import anthropic_double, openai_double
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
SEARCH_MODEL = "gpt-4o-search-preview"


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
        + model.format(id="double-search", provider="dbl-openai").replace("upstream-double-search", SEARCH_MODEL)
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


# ---------------------------------------------------------------- Codex's tools on a Claude model

APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: "*** Begin Patch" LF hunk+ "*** End Patch" LF?\n%import common.LF\n',
    },
}


def _responses_events(stack: Stack, **kwargs: Any) -> list[Any]:
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    return list(client.responses.create(stream=True, **kwargs))


def _final_output(stack: Stack, stream: bool, **kwargs: Any) -> list[Any]:
    if not stream:
        client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
        return list(client.responses.create(**kwargs).output)
    events = _responses_events(stack, **kwargs)
    assert events[-1].type == "response.completed"
    return list(events[-1].response.output)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_codex_apply_patch_reaches_a_claude_model_and_comes_back_as_raw_text(stack: Stack, stream: bool) -> None:
    claude = stack.anthropic_double
    output = _final_output(
        stack, stream, model="double-claude", input="Please call apply_patch to fix hello.py", tools=[APPLY_PATCH]
    )
    assert [item.type for item in output] == ["custom_tool_call"]
    call = output[0]
    assert (call.name, call.input, call.status) == ("apply_patch", anthropic_double.PATCH, "completed")
    offered = claude.requests[-1].body["tools"]
    assert offered == [
        {
            "name": "apply_patch",
            "description": "Use the `apply_patch` tool to edit files.\n\n"
            "Put the tool's whole input, as raw text, in the string field `input`.\n\n"
            "The input must follow this lark grammar:\n" + APPLY_PATCH["format"]["definition"],  # type: ignore[index]
            "input_schema": custom_tools.INPUT_SCHEMA,
        }
    ]

    second_turn = [
        {"type": "message", "role": "user", "content": "Please call apply_patch to fix hello.py"},
        {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done! Updated hello.py"},
    ]
    answer = _final_output(stack, stream, model="double-claude", input=second_turn, tools=[APPLY_PATCH])
    assert [item.type for item in answer] == ["message"]
    assert answer[0].content[0].text == "The tool said Done! Updated hello.py"
    messages = claude.requests[-1].body["messages"]
    assert messages[1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call.call_id,
                    "name": "apply_patch",
                    "input": {"input": anthropic_double.PATCH},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.call_id,
                    "content": [{"type": "text", "text": "Done! Updated hello.py"}],
                }
            ],
        },
    ]


def test_codex_apply_patch_streams_its_input_in_pieces(stack: Stack) -> None:
    events = _responses_events(
        stack, model="double-claude", input="Please call apply_patch to fix hello.py", tools=[APPLY_PATCH]
    )
    deltas = [event.delta for event in events if event.type == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 10 and "".join(deltas) == anthropic_double.PATCH
    (done,) = [event for event in events if event.type == "response.custom_tool_call_input.done"]
    assert done.input == anthropic_double.PATCH


def test_chat_completions_custom_tool_on_a_claude_model(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    custom = {key: value for key, value in APPLY_PATCH.items() if key != "type"}
    fmt = APPLY_PATCH["format"]
    assert isinstance(fmt, dict)
    custom["format"] = {"type": "grammar", "grammar": {"syntax": "lark", "definition": fmt["definition"]}}
    kwargs: dict[str, Any] = {
        "model": "double-claude",
        "messages": [{"role": "user", "content": "Fix hello.py"}],
        "tools": [{"type": "custom", "custom": custom}],
        "tool_choice": {"type": "custom", "custom": {"name": "apply_patch"}},
    }
    message = client.chat.completions.create(**kwargs).choices[0].message
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "custom" and (call.custom.name, call.custom.input) == ("apply_patch", anthropic_double.PATCH)
    assert stack.anthropic_double.requests[-1].body["tool_choice"] == {"type": "tool", "name": "apply_patch"}

    pieces: list[str] = []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            assert delta.model_extra is not None
            pieces.append(delta.model_extra["custom"]["input"])
    assert len(pieces) > 10 and "".join(pieces) == anthropic_double.PATCH


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_web_search_on_a_claude_model_is_a_web_search_call_with_citations(stack: Stack, stream: bool) -> None:
    output = _final_output(
        stack,
        stream,
        model="double-claude",
        input="Please search for the latest Python",
        tools=[{"type": "web_search"}],
    )
    assert [item.type for item in output][:2] == ["web_search_call", "message"]
    search = output[0]
    assert (search.status, search.action.type, search.action.query) == (
        "completed",
        "search",
        "Please search for the latest Python",
    )
    texts = [part for item in output[1:] for part in item.content]
    assert "".join(part.text for part in texts) == "Based on the search results, " + anthropic_double.SEARCH_ANSWER
    cited = texts[-1].annotations
    assert [(a.type, a.url, a.title, a.start_index, a.end_index) for a in cited] == [
        ("url_citation", "https://www.python.org/downloads/", "Download Python", 0, len(anthropic_double.SEARCH_ANSWER))
    ]
    tools = stack.anthropic_double.requests[-1].body["tools"]
    assert tools == [{"type": "web_search_20250305", "name": "web_search"}]


HOSTED_ELSEWHERE = pytest.mark.parametrize(
    ("model", "tool", "upstream"),
    [
        ("double-claude", {"type": "file_search", "vector_store_ids": ["vs_1"]}, "Anthropic Messages"),
        ("double-claude", {"type": "code_interpreter", "container": {"type": "auto"}}, "Anthropic Messages"),
        ("double-compat", {"type": "web_search"}, "Chat Completions"),
    ],
)


@HOSTED_ELSEWHERE
def test_a_hosted_tool_the_upstream_cannot_run_is_dropped_and_named_in_a_header(
    stack: Stack, model: str, tool: dict[str, Any], upstream: str
) -> None:
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    tools = [WEATHER_TOOL | {"type": "function"}, tool]
    raw = client.responses.with_raw_response.create(model=model, input="Hello gateway", tools=tools)
    assert raw.headers["x-hypereal-dropped"] == f"tools[1]:{tool['type']}"
    assert raw.parse().output_text.endswith("Hello gateway")
    with client.responses.with_streaming_response.create(
        model=model, input="Hello gateway", tools=tools, stream=True
    ) as streamed:
        assert streamed.headers["x-hypereal-dropped"] == f"tools[1]:{tool['type']}"
        assert "response.completed" in streamed.text()


@HOSTED_ELSEWHERE
def test_a_forced_hosted_tool_the_upstream_cannot_run_is_a_400_naming_it(
    stack: Stack, model: str, tool: dict[str, Any], upstream: str
) -> None:
    before, calls = stack.balance(), len(stack.anthropic_double.requests) + len(stack.openai_double.requests)
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=model,
            input="Hello gateway",
            tools=[WEATHER_TOOL | {"type": "function"}, tool],
            tool_choice={"type": tool["type"]},  # type: ignore[misc,arg-type]
        )
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": f"Tool type '{tool['type']}' cannot run at this model's upstream ({upstream}); "
        "leave it out or pick a model whose upstream runs it",
        "type": "invalid_request_error",
        "param": "tools.1",
        "code": None,
        "field": "tools.1",
    }
    assert stack.balance() == before, "refunded in full"
    assert len(stack.anthropic_double.requests) + len(stack.openai_double.requests) == calls, "no upstream call"


def test_hosted_tools_are_forwarded_untouched_to_openai(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    tools: list[Any] = [{"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "web_search_preview"}]
    response = client.responses.create(model="double-gpt", input="Hello gateway", tools=tools)
    assert response.output_text == f"Hello from OpenAI: {PROMPT}"
    assert stack.openai_double.requests[-1].body["tools"] == tools


# ---------------------------------------------------------------- Claude Code's tools on OpenAI models

SEARCH_PROMPT = "Please search for the latest Python"
ANTHROPIC_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
BASH = {"type": "bash_20250124", "name": "bash"}
EDITOR = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}


def _claude_message(stack: Stack, stream: bool, **kwargs: Any) -> Any:
    claude = anthropic.Anthropic(base_url=stack.server.url + "/api", api_key=stack.key, max_retries=0)
    if not stream:
        return claude.messages.create(max_tokens=200, **kwargs)
    with claude.messages.stream(max_tokens=200, **kwargs) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_claude_code_s_web_search_on_an_openai_model_comes_back_as_anthropic_s_search(
    stack: Stack, stream: bool
) -> None:
    message = _claude_message(
        stack,
        stream,
        model="double-gpt",
        messages=[{"role": "user", "content": SEARCH_PROMPT}],
        tools=[ANTHROPIC_SEARCH, BASH],
    )
    call, result, text = message.content
    assert (call.type, call.name, call.input) == ("server_tool_use", "web_search", {"query": SEARCH_PROMPT})
    assert result.type == "web_search_tool_result" and result.tool_use_id == call.id
    assert [page.url for page in result.content] == openai_double.SEARCH_SOURCES
    assert text.type == "text" and text.text == openai_double.SEARCH_ANSWER
    assert [(cited.type, cited.url, cited.title) for cited in text.citations or []] == [
        ("web_search_result_location", openai_double.SEARCH_PAGE["url"], openai_double.SEARCH_PAGE["title"])
    ]
    sent = stack.openai_double.requests[-1]
    assert sent.path == "/v1/responses", "OpenAI searches in its Responses API"
    assert [tool["type"] for tool in sent.body["tools"]] == ["function", "web_search"]


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_claude_code_s_bash_and_text_editor_reach_an_openai_model_as_functions(stack: Stack, stream: bool) -> None:
    first = [{"role": "user", "content": "Please call bash to list the files"}]
    message = _claude_message(stack, stream, model="double-gpt", messages=first, tools=[BASH, EDITOR])
    (call,) = message.content
    assert (call.type, call.name, message.stop_reason) == ("tool_use", "bash", "tool_use")
    offered = stack.openai_double.requests[-1].body["tools"]
    assert [(tool["function"]["name"], tool["function"]["parameters"]) for tool in offered] == [
        ("bash", anthropic_tools.BASH_SCHEMA),
        ("str_replace_based_edit_tool", anthropic_tools.text_editor_schema(undo=False)),
    ]

    result = {"type": "tool_result", "tool_use_id": call.id, "content": "hello.py"}
    turns = [*first, {"role": "assistant", "content": message.content}, {"role": "user", "content": [result]}]
    answer = _claude_message(stack, stream, model="double-gpt", messages=turns, tools=[BASH, EDITOR])
    assert [block.text for block in answer.content] == ["The tool said hello.py"]


COMPUTER = {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768}


def test_a_tool_only_anthropic_runs_is_dropped_elsewhere_and_named(stack: Stack) -> None:
    claude = anthropic.Anthropic(base_url=stack.server.url + "/api", api_key=stack.key, max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model="double-gpt", max_tokens=100, messages=[{"role": "user", "content": "hi"}], tools=[BASH, COMPUTER]
    )
    assert raw.headers["x-hypereal-dropped"] == "tools[1]:computer_20250124"
    assert [block.text for block in raw.parse().content] == ["Hello from OpenAI: hi"]
    assert [tool["name"] for tool in stack.openai_double.requests[-1].body["tools"]] == ["bash"]


def test_a_forced_tool_only_anthropic_runs_is_refused_in_anthropic_s_shape_naming_it(stack: Stack) -> None:
    before, calls = stack.balance(), len(stack.openai_double.requests)
    claude = anthropic.Anthropic(base_url=stack.server.url + "/api", api_key=stack.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model="double-gpt",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            tools=[BASH, COMPUTER],
            tool_choice={"type": "tool", "name": "computer"},
        )
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Tool type 'computer_20250124' cannot run at this model's upstream "
            "(OpenAI Responses, reached through translation); leave it out or pick a model whose upstream runs it",
        },
    }
    assert stack.balance() == before and len(stack.openai_double.requests) == calls


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_an_anthropic_client_reads_the_citations_of_an_openai_search_model(stack: Stack, stream: bool) -> None:
    message = _claude_message(
        stack,
        stream,
        model="double-search",
        messages=[{"role": "user", "content": SEARCH_PROMPT}],
        tools=[ANTHROPIC_SEARCH],
    )
    (text,) = message.content
    assert text.text == openai_double.SEARCH_ANSWER
    assert [cited.url for cited in text.citations or []] == [openai_double.SEARCH_PAGE["url"]]
    sent = stack.openai_double.requests[-1]
    assert (sent.path, sent.body["model"]) == ("/v1/chat/completions", SEARCH_MODEL)
    assert sent.body["web_search_options"] == {}, "a search model searches behind Chat Completions"


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_chat_completions_carries_the_citations_of_a_claude_search_streamed_or_not(stack: Stack, stream: bool) -> None:
    client = openai.OpenAI(base_url=stack.api, api_key=stack.key, max_retries=0)
    kwargs: dict[str, Any] = {
        "model": "double-claude",
        "messages": [{"role": "user", "content": SEARCH_PROMPT}],
        "web_search_options": {},
    }
    if stream:
        with client.chat.completions.stream(**kwargs) as events:
            message = events.get_final_completion().choices[0].message
    else:
        message = client.chat.completions.create(**kwargs).choices[0].message
    assert message.content == "Based on the search results, " + anthropic_double.SEARCH_ANSWER
    (cited,) = message.annotations or []
    span = cited.url_citation
    assert (span.url, span.title) == (
        anthropic_double.SEARCH_RESULTS[0]["url"],
        anthropic_double.SEARCH_RESULTS[0]["title"],
    )
    assert message.content[span.start_index : span.end_index] == anthropic_double.SEARCH_ANSWER
    assert stack.anthropic_double.requests[-1].body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
