"""The chat surfaces in process, on the built-in `local-echo` model: shapes, errors, extras."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from hypereal.llm import sse
from tests.conftest import TestAccount

MakeAccount = Callable[..., Awaitable[TestAccount]]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def answering(first: httpx.Response, output: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A Responses body that continues `first` with a tool's output."""
    return {"model": "local-echo", "previous_response_id": first.json()["id"], "input": [output], "tools": tools}


@pytest.mark.parametrize("prefix", ["/api/v1", "/v1"])
async def test_native_chat_answers_with_credits_used(
    client: httpx.AsyncClient, make_account: MakeAccount, prefix: str
) -> None:
    account = await make_account()
    answer = await client.post(
        f"{prefix}/chat", json={"messages": user("Hello, how are you?")}, headers=account.headers
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello, how are you?", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == "local-echo", "without a real upstream configured, the echo model is the default"
    assert body["creditsUsed"] == 2


async def test_native_chat_streams_openai_chunks(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    answer = await client.post(
        "/api/v1/chat", json={"messages": user("one two"), "stream": True}, headers=account.headers
    )
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = list(sse.Parser().feed(answer.content))
    assert events[-1].data == sse.DONE
    text = "".join(
        orjson.loads(e.data)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.data != sse.DONE
    )
    assert text == "one two"


async def test_model_lists_on_get(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/responses", "/api/v1/chat/completions"):
        listed = (await client.get(path)).json()
        ids = {model["id"] for model in listed["data"]}
        assert "local-echo" in ids and "gpt-5" in ids
        assert all(model["category"] == "llm" for model in listed["data"])


async def test_errors_take_the_shape_of_the_surface(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    missing_key = await client.post("/api/v1/messages", json={"model": "local-echo", "max_tokens": 5, "messages": []})
    assert missing_key.status_code == 401
    assert missing_key.json()["type"] == "error"
    assert missing_key.json()["error"]["type"] == "authentication_error"

    account = await make_account()
    unknown = await client.post(
        "/api/v1/chat/completions", json={"model": "nope", "messages": user("x")}, headers=account.headers
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"

    no_model = await client.post("/api/v1/responses", json={"input": "x"}, headers=account.headers)
    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "Model is required"

    media = await client.post(
        "/api/v1/chat/completions", json={"model": "local-image", "messages": user("x")}, headers=account.headers
    )
    assert media.status_code == 404, "media models are not chat models"

    native = await client.post("/api/v1/chat", json={"model": "nope", "messages": user("x")}, headers=account.headers)
    assert native.status_code == 404 and isinstance(native.json()["error"], str)


async def test_bad_input_leaves_no_trace_in_the_ledger(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    bad = await client.post(
        "/api/v1/chat/completions",
        json={"model": "local-echo", "messages": [{"role": "user", "content": 7}]},
        headers=account.headers,
    )
    assert bad.status_code == 400
    ledger = (await client.get("/api/v1/account/ledger", headers=account.headers)).json()["data"]
    assert [entry["kind"] for entry in ledger] == ["adjustment"]


async def test_anthropic_key_header_and_count_tokens(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    headers = {"x-api-key": account.key, "anthropic-version": "2023-06-01"}
    body = {"model": "local-echo", "max_tokens": 100, "system": "Be brief.", "messages": user("abcd" * 10)}
    counted = await client.post("/api/v1/messages/count_tokens", json=body, headers=headers)
    assert counted.status_code == 200
    assert counted.json() == {"input_tokens": 3 + 3 + 4 + 10}  # overhead, "Be brief.", message, text
    answer = await client.post("/api/v1/messages", json=body, headers=headers)
    assert answer.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]
    assert answer.json()["content"] == [{"type": "text", "text": "abcd" * 10}]


async def test_responses_previous_response_id_continues_the_conversation(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    other = await make_account()
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    first = await client.post(
        "/api/v1/responses",
        json={"model": "local-echo", "input": "please call lookup", "tools": tools},
        headers=account.headers,
    )
    call = next(item for item in first.json()["output"] if item["type"] == "function_call")
    follow = answering(first, {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}, tools)
    second = await client.post("/api/v1/responses", json=follow, headers=account.headers)
    assert second.status_code == 200
    assert second.json()["output"][-1]["content"][0]["text"] == "The tool returned: 42"
    stolen = await client.post("/api/v1/responses", json=follow, headers=other.headers)
    assert stolen.status_code == 404, "another account's response is not found"
    assert stolen.json()["error"]["type"] == "invalid_request_error"


async def test_responses_custom_tool_call_continues_through_a_stored_response(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    tools = [{"type": "custom", "name": "apply_patch", "format": {"type": "text"}}, {"type": "local_shell"}]
    prompt = 'call apply_patch with "quotes"\nand ünïcode'
    first = await client.post(
        "/api/v1/responses", json={"model": "local-echo", "input": prompt, "tools": tools}, headers=account.headers
    )
    (call,) = first.json()["output"]
    assert call == {
        "id": call["id"],
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": call["call_id"],
        "name": "apply_patch",
        "input": prompt,
    }
    output = {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "patched"}
    second = await client.post("/api/v1/responses", json=answering(first, output, tools), headers=account.headers)
    assert second.json()["output"][-1]["content"][0]["text"] == "The tool returned: patched"

    hosted = [*tools, {"type": "image_generation"}]
    unforced = await client.post(
        "/api/v1/responses", json={"model": "local-echo", "input": "hi", "tools": hosted}, headers=account.headers
    )
    assert unforced.status_code == 200
    assert unforced.headers["x-hypereal-dropped"] == "tools[2]:image_generation"
    forced = {"model": "local-echo", "input": "hi", "tools": hosted, "tool_choice": {"type": "image_generation"}}
    refused = await client.post("/api/v1/responses", json=forced, headers=account.headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "tools.2"
    assert refused.json()["error"]["message"].startswith("Tool type 'image_generation' cannot run")


async def test_chat_completions_extras_json_mode_n_and_stop(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    body = {
        "model": "local-echo",
        "messages": user("alpha beta gamma"),
        "response_format": {"type": "json_object"},
        "n": 2,
    }
    answer = (await client.post("/api/v1/chat/completions", json=body, headers=account.headers)).json()
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    assert orjson.loads(answer["choices"][1]["message"]["content"]) == {"echo": "alpha beta gamma"}
    stopped = await client.post(
        "/api/v1/chat/completions",
        json={"model": "local-echo", "messages": user("alpha beta gamma"), "stop": "gamma", "max_tokens": 50},
        headers=account.headers,
    )
    assert stopped.json()["choices"][0]["message"]["content"] == "alpha beta "
