"""What today's clients send, in process on `local-echo`: every turn completes, streamed or
not, and the answer's `x-hypereal-dropped` header names what the translation left out.

The bodies are the shortened first turns of Claude Code and Codex CLI kept as golden cases
(tests/unit/golden/llm).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hypereal.llm import sse
from tests.conftest import TestAccount

MakeAccount = Callable[..., Awaitable[TestAccount]]
GOLDEN = Path(__file__).parents[1] / "unit" / "golden" / "llm"
DROPPED = "x-hypereal-dropped"


def client_body(case: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((GOLDEN / f"{case}.json").read_text())["input"]
    return {**body, "model": "local-echo", **changes}


def events(answer: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(event.data) for event in sse.Parser().feed(answer.content) if event.data != sse.DONE]


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_claude_code_s_first_turn_completes_and_says_what_was_dropped(
    client: httpx.AsyncClient, make_account: MakeAccount, stream: bool
) -> None:
    account = await make_account()
    headers = {"x-api-key": account.key, "anthropic-version": "2023-06-01", "anthropic-beta": "context-management"}
    body = client_body("anthropic_request_claude_code_to_chat", stream=stream)
    answer = await client.post("/api/v1/messages?beta=true", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers[DROPPED] == "cache_control,tools[1].defer_loading,context_management,thinking.display"
    if stream:
        kinds = [event["type"] for event in events(answer)]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        text = "".join(
            event["delta"].get("text", "") for event in events(answer) if event["type"] == "content_block_delta"
        )
    else:
        text = "".join(block.get("text", "") for block in answer.json()["content"])
    assert text.endswith("Reply with a short greeting."), "the system turn after it is not what is echoed"


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_codex_s_first_turn_completes_and_says_what_was_dropped(
    client: httpx.AsyncClient, make_account: MakeAccount, stream: bool
) -> None:
    account = await make_account()
    body = client_body("responses_request_codex_namespaces_to_chat", stream=stream)
    answer = await client.post("/api/v1/responses", json=body, headers=account.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers[DROPPED] == "tools[2]:web_search,store,include,prompt_cache_key,client_metadata"
    output = events(answer)[-1]["response"]["output"] if stream else answer.json()["output"]
    assert output[-1]["content"][0]["text"].endswith("Reply with a short greeting.")


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_a_call_of_a_namespaced_tool_reaches_codex_under_its_own_name_and_comes_back(
    client: httpx.AsyncClient, make_account: MakeAccount, stream: bool
) -> None:
    account = await make_account()
    forced = {"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"}
    body = client_body("responses_request_codex_namespaces_to_chat", stream=stream, tool_choice=forced)
    answer = await client.post("/api/v1/responses", json=body, headers=account.headers)
    assert answer.status_code == 200, answer.text
    if stream:
        sent = events(answer)
        added = [event["item"] for event in sent if event["type"] == "response.output_item.added"]
        assert [(item["name"], item["namespace"]) for item in added] == [("spawn_agent", "multi_agent_v1")]
        (call,) = [event["item"] for event in sent if event["type"] == "response.output_item.done"]
    else:
        (call,) = answer.json()["output"]
    assert (call["type"], call["name"], call["namespace"]) == ("function_call", "spawn_agent", "multi_agent_v1")

    returned = {key: call[key] for key in ("type", "name", "namespace", "arguments", "call_id")}
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "agent a1 started"}
    follow = client_body("responses_request_codex_namespaces_to_chat", stream=False)
    follow["input"] = [*follow["input"], returned, output]
    second = await client.post("/api/v1/responses", json=follow, headers=account.headers)
    assert second.json()["output"][-1]["content"][0]["text"] == "The tool returned: agent a1 started"


@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/api/v1/chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_chat_completions_system_turns_keep_their_place_and_unknown_roles_are_named(
    client: httpx.AsyncClient, make_account: MakeAccount, path: str, stream: bool
) -> None:
    account = await make_account()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "critic", "content": "Too long."},
        {"role": "developer", "content": "Answer in English."},
    ]
    body = {"model": "local-echo", "messages": messages, "stream": stream, "seed": 7}
    answer = await client.post(path, json=body, headers=account.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers[DROPPED] == "messages[2]:critic,seed"
    if stream:
        chunks = [chunk for chunk in events(answer) if chunk.get("choices")]
        text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    else:
        text = answer.json()["choices"][0]["message"]["content"]
    assert text == "Hello there"


async def test_an_answer_that_left_nothing_out_has_no_such_header(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    answer = await client.post(
        "/api/v1/chat/completions",
        json={"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]},
        headers=account.headers,
    )
    assert answer.status_code == 200 and DROPPED not in answer.headers
