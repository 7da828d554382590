"""Today's clients' bodies through the official SDKs, against a running server and its doubles.

The bodies are the shortened first turns of Claude Code and Codex CLI kept as golden cases
(tests/unit/golden/llm), sent as the SDKs send them (fields an SDK does not know go in
`extra_body`, as a client built on it sends them). Forwarded to an upstream of their own
format they arrive untouched; translated, what has a counterpart arrives mapped, the rest is
named in the `x-hypereal-dropped` header, and the turn completes, streamed or not. The
models are those of `tests.integration.chat_support`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openai.resources.responses.responses import Responses

from tests.conftest import Server
from tests.integration.chat_support import Stack, running_stack

GOLDEN = Path(__file__).parents[1] / "unit" / "golden" / "llm"
DROPPED = "x-hypereal-dropped"
CLAUDE_CODE = "anthropic_request_claude_code_to_chat"
CODEX = "responses_request_codex_namespaces_to_chat"


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


def client_body(case: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((GOLDEN / f"{case}.json").read_text())["input"]
    return {**body, **changes}


def sdk_arguments(create: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any]:
    """`body` as keyword arguments of an SDK's `create` (but `stream`), the fields it does not
    know in `extra_body`."""
    known = inspect.signature(create).parameters
    arguments = {key: value for key, value in body.items() if key in known and key != "stream"}
    extra = {key: value for key, value in body.items() if key not in known}
    return {**arguments, "extra_body": extra} if extra else arguments


def claude(stack: Stack) -> anthropic.Anthropic:
    client = stack.account()
    return anthropic.Anthropic(base_url=client.api.removesuffix("/v1"), api_key=client.key, max_retries=0)


def codex(stack: Stack) -> openai.OpenAI:
    client = stack.account()
    return openai.OpenAI(base_url=client.api, api_key=client.key, max_retries=0)


def send_messages(stack: Stack, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The answer's text and headers, streamed or not as `body` says."""
    messages = claude(stack).messages
    arguments = sdk_arguments(anthropic.resources.Messages.create, body)
    if body.get("stream"):
        with messages.with_streaming_response.create(**arguments, stream=True) as answer:
            text = "".join(
                event["delta"].get("text", "")
                for line in answer.iter_lines()
                if line.startswith("data: ") and (event := json.loads(line[6:]))["type"] == "content_block_delta"
            )
            return text, dict(answer.headers)
    raw = messages.with_raw_response.create(**arguments, timeout=60)  # Claude Code's 128k max_tokens, unstreamed
    return "".join(block.text for block in raw.parse().content if block.type == "text"), dict(raw.headers)


def send_responses(stack: Stack, body: dict[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """The answer's output items and headers, streamed or not as `body` says."""
    responses = codex(stack).responses
    arguments = sdk_arguments(Responses.create, body)
    if body.get("stream"):
        with responses.with_streaming_response.create(**arguments, stream=True) as answer:
            headers = dict(answer.headers)
            events = answer.parse()
            final = [event for event in events if event.type == "response.completed"]
        return list(final[-1].response.output), headers
    raw = responses.with_raw_response.create(**arguments)
    return list(raw.parse().output), dict(raw.headers)


def without_stream(body: dict[str, Any]) -> dict[str, Any]:
    """A body but for `stream`, which an SDK leaves out of an unstreamed call."""
    return {key: value for key, value in body.items() if key != "stream"}


STREAMS = pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])


@STREAMS
def test_claude_code_s_turn_on_an_openai_model_keeps_its_system_turn_and_maps_its_effort(
    stack: Stack, stream: bool
) -> None:
    before = len(stack.gpt.requests)
    text, headers = send_messages(stack, client_body(CLAUDE_CODE, model="bill-gpt", stream=stream))
    assert text.startswith("Hello from OpenAI: ") and text.endswith("Reply with a short greeting.")
    assert set(headers[DROPPED].split(",")) == {
        "cache_control",
        "tools[1].defer_loading",
        "metadata.user_id",
        "context_management",
        "thinking.display",
    }
    (sent,) = stack.gpt.requests[before:]
    assert sent.path == "/v1/chat/completions"
    assert [message["role"] for message in sent.body["messages"]] == ["system", "user", "system"]
    assert sent.body["messages"][2]["content"].startswith("# Environment")
    assert sent.body["reasoning_effort"] == "medium"
    assert not {"user", "context_management", "thinking", "metadata"} & set(sent.body)


@STREAMS
def test_claude_code_s_turn_on_a_claude_model_arrives_untouched(stack: Stack, stream: bool) -> None:
    before = len(stack.claude.requests)
    body = client_body(CLAUDE_CODE, model="bill-claude", stream=stream)
    text, headers = send_messages(stack, body)
    assert text.startswith("Hello from Claude: ")
    assert DROPPED not in headers
    (sent,) = stack.claude.requests[before:]
    assert without_stream(sent.body) == without_stream({**body, "model": "upstream-bill-claude"})


@STREAMS
def test_codex_s_turn_on_a_claude_model_flattens_its_namespace_and_the_call_comes_back_under_it(
    stack: Stack, stream: bool
) -> None:
    before = len(stack.claude.requests)
    body = client_body(CODEX, model="bill-claude", stream=stream)
    namespace, *others = [tool for tool in body["tools"] if tool["type"] == "namespace"] + [
        tool for tool in body["tools"] if tool["type"] != "namespace"
    ]
    body["tools"] = [namespace, *others]  # the double calls the first tool offered
    body["input"] = [*body["input"], {"role": "user", "content": "Please call it."}]
    output, headers = send_responses(stack, body)
    assert set(headers[DROPPED].split(",")) == {
        "tools[2]:web_search",
        "store",
        "include",
        "prompt_cache_key",
        "client_metadata",
    }
    (call,) = output
    assert (call.type, call.name, call.namespace) == ("function_call", "spawn_agent", "multi_agent_v1")
    (sent,) = stack.claude.requests[before:]
    assert [tool["name"] for tool in sent.body["tools"]] == [
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__wait_agent",
        "exec_command",
    ]
    assert sent.body["system"] == [{"type": "text", "text": "You are a coding agent running in the Codex CLI."}]

    returned = {"type": "function_call", "name": call.name, "namespace": call.namespace}
    returned |= {"arguments": call.arguments, "call_id": call.call_id}
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "agent a1 started"}
    follow = {**body, "input": [*body["input"], returned, result]}
    answer, _ = send_responses(stack, follow)
    assert answer[-1].content[0].text == "The tool said agent a1 started"
    sent = stack.claude.requests[-1]
    assert sent.body["messages"][-2]["content"][0]["name"] == "multi_agent_v1__spawn_agent"
    assert sent.body["messages"][-1]["content"][0]["type"] == "tool_result"


@STREAMS
def test_codex_s_turn_on_an_openai_model_arrives_untouched(stack: Stack, stream: bool) -> None:
    before = len(stack.gpt.requests)
    body = client_body(CODEX, model="bill-codex", stream=stream)
    output, headers = send_responses(stack, body)
    assert output[-1].content[0].text.startswith("Hello from OpenAI: ")
    assert DROPPED not in headers
    (sent,) = stack.gpt.requests[before:]
    assert sent.path == "/v1/responses"
    assert without_stream(sent.body) == without_stream({**body, "model": "upstream-bill-codex"}), "every field"


@STREAMS
def test_chat_completions_system_turns_reach_a_claude_model_in_their_place(stack: Stack, stream: bool) -> None:
    before = len(stack.claude.requests)
    client = codex(stack)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "system", "content": "The user is now on a phone."},
        {"role": "user", "content": "And now?"},
    ]
    if stream:
        with client.chat.completions.stream(model="bill-claude", messages=messages) as events:
            text = events.get_final_completion().choices[0].message.content
    else:
        text = client.chat.completions.create(model="bill-claude", messages=messages).choices[0].message.content
    assert text == "Hello from Claude: And now?"
    (sent,) = stack.claude.requests[before:]
    assert sent.body["system"] == [{"type": "text", "text": "Be brief."}]
    assert [message["role"] for message in sent.body["messages"]] == ["user", "assistant", "system", "user"]
