"""Switching models mid-conversation: each vendor gets back only the reasoning tokens it made.

Claude Code switches between a Claude model and an OpenAI one (`/model`) and sends the whole
history each time; so does Codex, the other way round. The doubles refuse tokens they did
not issue, as Anthropic and OpenAI do: a thinking block signed elsewhere, a search result
Anthropic did not find, a reasoning item OpenAI did not encrypt. `bill-claude` is the
Anthropic double, `bill-codex` the OpenAI double's Responses API (`chat_support`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from hypereal.llm import continuity
from tests.conftest import Server
from tests.doubles import anthropic_double, openai_double
from tests.integration.chat_support import Stack, running_stack

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = "Please call get_weather for me"


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


def _claude_turn(client: anthropic.Anthropic, model: str, messages: list[dict[str, Any]], stream: bool) -> Any:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [WEATHER],
        "messages": messages,
    }
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_claude_code_moving_from_an_openai_model_to_claude_keeps_only_claude_s_thinking(
    stack: Stack, stream: bool
) -> None:
    key = stack.account().key
    client = anthropic.Anthropic(base_url=stack.server.url + "/api", api_key=key, max_retries=0)
    history: list[dict[str, Any]] = [{"role": "user", "content": "Hello"}]

    def turn(model: str) -> list[dict[str, Any]]:
        message = _claude_turn(client, model, history, stream)
        blocks = [block.model_dump(exclude_none=True) for block in message.content]
        history.append({"role": "assistant", "content": blocks})
        return blocks

    claude_thinking = turn("bill-claude")[0]
    assert claude_thinking["signature"] == anthropic_double.SIGNATURE
    history.append({"role": "user", "content": CALL})
    thinking, call = turn("bill-codex")
    assert thinking["type"] == "thinking" and thinking["thinking"] == openai_double.REASONING_SUMMARY
    assert thinking["signature"] == continuity.UNSIGNED, "OpenAI's reasoning is no thinking Anthropic signed"
    assert call["type"] == "tool_use"
    history.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny"}]}
    )

    answer = turn("bill-claude")

    assert answer == [{"type": "text", "text": "The tool said Sunny"}]
    sent = stack.claude.requests[-1].body
    signatures = [
        block["signature"]
        for message in sent["messages"]
        for block in (message["content"] if isinstance(message["content"], list) else ())
        if block["type"] == "thinking"
    ]
    assert signatures == [anthropic_double.SIGNATURE], "Claude's own thinking goes back, OpenAI's does not"
    assert "thinking" not in sent, "the tool call being answered has no thinking Claude signed"


def _codex_turn(client: openai.OpenAI, model: str, items: list[dict[str, Any]], stream: bool) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "model": model,
        "input": items,
        "store": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "function", "name": WEATHER["name"], "parameters": WEATHER["input_schema"]}],
    }
    if stream:
        events = list(client.responses.create(**kwargs, stream=True))
        response = next(event.response for event in events if event.type == "response.completed")
    else:
        response = client.responses.create(**kwargs)
    return [item.model_dump(exclude_none=True) for item in response.output]


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_codex_moving_from_claude_to_an_openai_model_keeps_only_openai_s_reasoning(stack: Stack, stream: bool) -> None:
    account = stack.account()
    client = openai.OpenAI(base_url=account.api, api_key=account.key, max_retries=0)
    items: list[dict[str, Any]] = [{"role": "user", "content": CALL}]

    output = _codex_turn(client, "bill-codex", items, stream)
    reasoning, call = output
    assert reasoning["encrypted_content"] == openai_double.ENCRYPTED
    items += [*output, {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}]
    items += _codex_turn(client, "bill-claude", items, stream)
    items.append({"role": "user", "content": "Hello again"})
    claude_output = _codex_turn(client, "bill-claude", items, stream)
    claude_reasoning = claude_output[0]
    assert claude_reasoning["encrypted_content"] == continuity.tag(anthropic_double.SIGNATURE, "anthropic")
    items += [*claude_output, {"role": "user", "content": CALL}]

    output = _codex_turn(client, "bill-codex", items, stream)

    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    sent = stack.gpt.requests[-1].body["input"]
    assert [item.get("encrypted_content") for item in sent if item.get("type") == "reasoning"] == [
        openai_double.ENCRYPTED
    ], "OpenAI's own reasoning goes back, Claude's does not"
