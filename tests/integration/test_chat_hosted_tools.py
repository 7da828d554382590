"""Hosted tools across the routes of a model, against a running server and its doubles.

`bill-echo-claude` and `bill-echo-gpt` are served first by local-echo, which runs no hosted
tool, then by the Anthropic or the OpenAI double (`tests.integration.chat_support`). A
request with a hosted tool skips the routes that cannot run it; a tool that no route runs
is dropped and named in the answer's `x-hypereal-dropped` header, unless the client forces
it: that is refused before anything is reserved, so it leaves no trace in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from hypereal.llm import sse
from tests.conftest import Server
from tests.doubles import anthropic_double, openai_double
from tests.integration.chat_support import Client, Stack, running_stack

SEARCH_PROMPT = "Please search for the latest Python"


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


def post_events(client: Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", client.api + path, content=orjson.dumps(body), headers=client.headers) as response:
        assert response.status_code == 200, response.read()
        return [orjson.loads(event.data) for event in sse.Parser().feed(response.read()) if event.data != sse.DONE]


def calls(stack: Stack) -> int:
    return len(stack.gpt.requests) + len(stack.claude.requests)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_a_search_skips_the_route_that_cannot_run_it(stack: Stack, stream: bool) -> None:
    client, before = stack.account(), len(stack.claude.requests)
    body = {"model": "bill-echo-claude", "input": SEARCH_PROMPT, "tools": [{"type": "web_search"}], "stream": stream}
    if stream:
        output = post_events(client, "/responses", body)[-1]["response"]["output"]
    else:
        answer = client.post("/responses", body)
        assert answer.status_code == 200, answer.text
        output = answer.json()["output"]
    assert [item["type"] for item in output][:2] == ["web_search_call", "message"]
    assert output[0]["action"]["query"] == SEARCH_PROMPT
    (sent,) = stack.claude.requests[before:]
    assert sent.body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    # 8 fresh and 3 cached input tokens; 7 output tokens, or one a delta when streaming
    blocks = anthropic_double.search_blocks(SEARCH_PROMPT)
    deltas = len(anthropic_double.json_pieces(blocks[0]["input"])) + sum(len(b["text"].split(" ")) for b in blocks[2:])
    output_tokens = deltas if stream else 7
    assert client.settled_cost() == pytest.approx(8 + 0.3 + 2 * output_tokens)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_an_anthropic_client_s_search_runs_at_the_openai_route_after_the_route_that_cannot(
    stack: Stack, stream: bool
) -> None:
    client, before = stack.account(), len(stack.gpt.requests)
    body = {
        "model": "bill-echo-gpt",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": SEARCH_PROMPT}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "stream": stream,
    }
    if stream:
        events = post_events(client, "/messages", body)
        blocks = [event["content_block"] for event in events if event["type"] == "content_block_start"]
        citations = [event["delta"]["citation"] for event in events if event.get("delta", {}).get("citation")]
        text = "".join(event["delta"].get("text", "") for event in events if event["type"] == "content_block_delta")
    else:
        answer = client.post("/messages", body)
        assert answer.status_code == 200, answer.text
        blocks = answer.json()["content"]
        citations = [citation for block in blocks for citation in block.get("citations") or ()]
        text = "".join(block.get("text", "") for block in blocks)
    assert [block["type"] for block in blocks] == ["server_tool_use", "web_search_tool_result", "text"]
    assert blocks[0]["name"] == "web_search" and blocks[1]["tool_use_id"] == blocks[0]["id"]
    assert [page["url"] for page in blocks[1]["content"]] == openai_double.SEARCH_SOURCES
    assert text == openai_double.SEARCH_ANSWER
    assert [(citation["url"], citation["title"]) for citation in citations] == [
        tuple(openai_double.SEARCH_PAGE.values())
    ]
    (sent,) = stack.gpt.requests[before:]
    assert sent.path == "/v1/responses"
    assert sent.body["tools"] == [{"type": "web_search"}]
    assert sent.body["include"] == ["web_search_call.action.sources"]
    assert client.settled_cost() == 11 + 2 * 5


CODE_EXECUTION = {"type": "code_execution_20250825", "name": "code_execution"}
COMPUTER = {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768}
FILE_SEARCH = {"type": "file_search", "vector_store_ids": ["vs_1"]}
RESPONSES = "OpenAI Responses, reached through translation"


NO_ROUTE_RUNS = pytest.mark.parametrize(
    ("path", "model", "tool", "upstream"),
    [
        ("/messages", "bill-echo-gpt", CODE_EXECUTION, "local-echo"),
        ("/messages", "bill-gpt", COMPUTER, RESPONSES),
        ("/responses", "bill-echo-claude", FILE_SEARCH, "local-echo"),
    ],
)


def offering(path: str, model: str, tool: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "tools": [tool], **extra}
    if path == "/messages":
        body.update(max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    else:
        body.update(max_output_tokens=50, input="hi")
    return body


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@NO_ROUTE_RUNS
def test_a_tool_no_route_runs_is_dropped_and_named_in_the_answer(
    stack: Stack, path: str, model: str, tool: dict[str, Any], upstream: str, stream: bool
) -> None:
    client, before = stack.account(), len(stack.gpt.requests)
    body = offering(path, model, tool, stream=stream)
    with httpx.stream("POST", client.api + path, content=orjson.dumps(body), headers=client.headers) as answer:
        answer.read()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-hypereal-dropped"] == f"tools[0]:{tool['type']}"
    if stream:
        assert answer.headers["content-type"].startswith("text/event-stream")
    if upstream == RESPONSES:
        (sent,) = stack.gpt.requests[before:]
        assert sent.path == "/v1/responses" and "tools" not in sent.body
    assert client.settled_cost() > 0


def forcing(path: str, tool: dict[str, Any]) -> dict[str, Any]:
    if path == "/messages":
        return {"type": "tool", "name": tool["name"]}
    return {"type": tool["type"]}


@NO_ROUTE_RUNS
def test_a_forced_tool_no_route_runs_is_a_400_in_the_surface_shape_before_anything_is_reserved(
    stack: Stack, path: str, model: str, tool: dict[str, Any], upstream: str
) -> None:
    client, seen = stack.account(), calls(stack)
    answer = client.post(path, offering(path, model, tool, tool_choice=forcing(path, tool)))
    assert answer.status_code == 400
    error = answer.json()
    message = error["error"]["message"]
    assert message.startswith(f"Tool type '{tool['type']}' cannot run at this model's upstream ({upstream})")
    if path == "/messages":
        assert error == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    else:
        assert error["error"]["param"] == "tools.0"
    assert calls(stack) == seen, "no upstream call"
    assert client.chat_entries() == [], "nothing charged, nothing refunded"


def test_a_forced_search_goes_to_the_route_that_runs_it(stack: Stack) -> None:
    client, before = stack.account(), len(stack.claude.requests)
    body = offering("/responses", "bill-echo-claude", {"type": "web_search"}, tool_choice={"type": "web_search"})
    body["tools"].append(FILE_SEARCH)
    answer = client.post("/responses", {**body, "input": SEARCH_PROMPT})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-hypereal-dropped"] == "tools[1]:file_search"
    (sent,) = stack.claude.requests[before:]
    assert sent.body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]


def test_a_route_that_forwards_runs_what_its_upstream_runs(stack: Stack) -> None:
    client, before = stack.account(), len(stack.gpt.requests)
    tools = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]
    answer = client.post("/responses", {"model": "bill-echo-gpt", "input": "hi", "tools": tools})
    assert answer.status_code == 200, answer.text
    (sent,) = stack.gpt.requests[before:]
    assert sent.body["tools"] == tools, "forwarded as the client sent it"
    assert client.settled_cost() == 11 + 2 * 5
