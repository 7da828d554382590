"""`previous_response_id` backed by the database, on SQLite and PostgreSQL.

- the stored form round-trips every canonical part, thinking signatures included;
- the store scopes rows by account, expires them and prunes them;
- a response made through one `hypereal serve` process is continued through another
  sharing the database, and after a restart; another account gets 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from hypereal.errors import NotFound
from hypereal.llm import sse
from hypereal.llm.responses_store import ResponseStore, decode_conversation, encode_conversation
from hypereal.llm.types import (
    ImagePart,
    Message,
    RedactedThinkingPart,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
)
from hypereal.services import Services
from hypereal.store import responses as sql
from tests.conftest import ADMIN_HEADERS, Server, TestAccount

MakeAccount = Callable[..., Awaitable[TestAccount]]
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def every_part() -> list[Message]:
    """A conversation with each kind of part, and the values wire formats tend to lose."""
    return [
        Message(
            "user",
            [
                TextPart("Look at these"),
                TextPart(""),
                ImagePart(PIXEL, detail="high"),
                ImagePart("https://example.com/cat.jpg"),
            ],
        ),
        Message(
            "assistant",
            [
                ThinkingPart("Let me think… ünïcode ✓", signature="sig-abc=="),
                ThinkingPart("unsigned"),
                RedactedThinkingPart("opaque-bytes"),
                TextPart("I'll look it up."),
                ToolUsePart("call_1", "lookup", '{"q": "cats", "n": 2}'),
                ToolUsePart("call_2", "broken", '{"q": "cut'),
                ToolUsePart("call_3", "empty"),
            ],
        ),
        Message(
            "user",
            [
                ToolResultPart("call_1", [TextPart("found 2"), ImagePart(PIXEL)]),
                ToolResultPart("call_2", [TextPart("bad arguments")], is_error=True),
                ToolResultPart("call_3"),
                TextPart("thanks"),
            ],
        ),
    ]


def test_the_stored_form_round_trips_every_part() -> None:
    conversation = every_part()
    assert decode_conversation(encode_conversation(conversation)) == conversation


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"v": 99, "messages": []}',
        '{"v": 1, "messages": [{"role": "developer", "content": []}]}',
        '{"v": 1, "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}',
        '{"v": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}',
        '{"v": 1, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a",'
        ' "content": [{"type": "tool_use", "id": "b", "name": "c", "arguments": ""}]}]}]}',
    ],
)
def test_a_body_this_code_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_conversation(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_rows_are_scoped_expire_and_are_pruned(services: Services, make_account: MakeAccount) -> None:
    owner, stranger = await make_account(), await make_account()
    clock = Clock()
    store = ResponseStore(services.db, ttl_seconds=100, prune_interval_seconds=10, clock=clock)

    await store.put("resp_old", owner.id, every_part())
    assert await store.find("resp_old", owner.id) == every_part()
    assert await store.find("resp_unknown", owner.id) is None
    with pytest.raises(NotFound):
        await store.find("resp_old", stranger.id)

    clock.now += 101
    assert await store.find("resp_old", owner.id) is None, "past its time to live it is missing"
    async with services.db.read() as conn:
        assert await sql.find(conn, "resp_old", not_before=0) is not None, "not deleted until a prune"

    await store.put("resp_new", owner.id, every_part()[:1])
    await store.close()  # waits for the prune that writing started
    async with services.db.read() as conn:
        assert await sql.find(conn, "resp_old", not_before=0) is None
        assert await sql.find(conn, "resp_new", not_before=0) is not None
    assert await store.find("resp_new", owner.id) == every_part()[:1]


async def test_concurrent_writes_share_a_commit_and_one_bad_row_spoils_none(
    services: Services, make_account: MakeAccount
) -> None:
    owner = await make_account()
    store = ResponseStore(services.db)
    conversations = {f"resp_{n}": [Message("user", [TextPart(f"turn {n}")])] for n in range(20)}
    # An account that does not exist breaks the foreign key, and with it the shared transaction.
    writes = [store.put(response_id, owner.id, messages) for response_id, messages in conversations.items()]
    await asyncio.gather(*writes, store.put("resp_orphan", "acct_missing", every_part()))
    for response_id, messages in conversations.items():
        assert await store.find(response_id, owner.id) == messages
    async with services.db.read() as conn:
        assert await sql.find(conn, "resp_orphan", not_before=0) is None
    await store.close()


# ---------------------------------------------------------------- across processes

TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {}}}}]


def new_key(server: Server) -> dict[str, str]:
    account = httpx.post(
        server.url + "/api/v1/admin/accounts", json={"name": "responses", "credits": 1000}, headers=ADMIN_HEADERS
    ).json()
    made = httpx.post(server.url + f"/api/v1/admin/accounts/{account['id']}/keys", json={}, headers=ADMIN_HEADERS)
    return {"Authorization": f"Bearer {made.json()['key']}"}


def post(server: Server, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json={"model": "local-echo", **body}, headers=headers, timeout=30)


def stream(server: Server, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The response of a streamed call, as its `response.completed` event tells it."""
    answer = httpx.post(
        server.url + "/v1/responses",
        json={"model": "local-echo", "stream": True, **body},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    events = [orjson.loads(event.data) for event in sse.Parser().feed(answer.content)]
    completed = [event for event in events if event["type"] == "response.completed"]
    assert len(completed) == 1, events
    response: dict[str, Any] = completed[0]["response"]
    return response


def test_a_response_is_continued_through_another_process_and_after_a_restart(
    start_server: Callable[..., Server], database_url: str
) -> None:
    env = {"HYPEREAL_DATABASE_URL": database_url}
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: start_server(env=env), range(2))
    owner, stranger = new_key(first), new_key(first)

    made = post(first, owner, {"input": "please call lookup", "tools": TOOLS})
    assert made.status_code == 200, made.text
    call = next(item for item in made.json()["output"] if item["type"] == "function_call")
    tool_output = {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}

    # The second process never saw the first response; it reads it from the database.
    follow_up = {"previous_response_id": made.json()["id"], "input": [tool_output], "tools": TOOLS}
    continued = stream(second, owner, follow_up)
    assert continued["output"][-1]["content"][0]["text"] == "The tool returned: 42"
    # Continuing costs exactly what resending the whole conversation costs: nothing was lost.
    resent = post(
        second,
        owner,
        {
            "input": [{"role": "user", "content": "please call lookup"}, *made.json()["output"], tool_output],
            "tools": TOOLS,
        },
    )
    assert continued["usage"]["input_tokens"] == resent.json()["usage"]["input_tokens"]

    stolen = post(second, stranger, {"previous_response_id": made.json()["id"], "input": "hi"})
    assert stolen.status_code == 404
    assert stolen.json()["error"]["param"] == "previous_response_id"
    unknown = post(second, owner, {"previous_response_id": "resp_nothing_like_it", "input": "hi"})
    assert unknown.status_code == 404

    # The streamed answer was stored before its last event went out: the first process
    # continues it at once, and so does a process started after both stopped.
    third_turn = post(first, owner, {"previous_response_id": continued["id"], "input": "and then?"})
    assert third_turn.status_code == 200, third_turn.text
    first.stop()
    second.stop()
    restarted = start_server(env=env)
    after = post(restarted, owner, {"previous_response_id": third_turn.json()["id"], "input": "still there?"})
    assert after.status_code == 200, after.text
    assert after.json()["output"][-1]["content"][0]["text"] == "still there?"
    assert after.json()["usage"]["input_tokens"] > third_turn.json()["usage"]["input_tokens"]
    assert post(restarted, stranger, {"previous_response_id": third_turn.json()["id"], "input": "x"}).status_code == 404
    restarted.stop()
