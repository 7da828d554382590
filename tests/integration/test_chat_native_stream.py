"""The native `/chat` stream ends with the settled `creditsUsed`, as the non-streaming answer does.

The test catalog prices one input token at 1 credit and one output token at 2 credits, so
each settlement is an exact figure: the OpenAI double reports 11 prompt tokens and 5
completion tokens, the Anthropic double 8 fresh + 3 cached (0.1 credit each) input tokens
and 7 output tokens (4 when streaming, one per delta). Their streams are forwarded byte for byte (OpenAI) or translated
(Anthropic, local-echo); each must close with one chunk carrying `creditsUsed`, then `[DONE]`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hypereal.llm import sse
from hypereal.llm.gateway import gateway
from hypereal.services import Services
from hypereal.settings import Settings
from tests.conftest import TestAccount, create_test_account
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import OpenAIDouble

PRICING = "{input_per_mtok: 1000000, output_per_mtok: 2000000, cached_input_per_mtok: 100000}"


def _model(model_id: str, provider: str) -> str:
    return (
        f"  - id: {model_id}\n    category: llm\n    name: {model_id}\n    description: A native stream test model.\n"
        f"    max_output_tokens: 1000\n    pricing: {PRICING}\n"
        f"    routes:\n      - {{provider: {provider}, model: upstream-{model_id}}}\n"
    )


class Stack:
    def __init__(self, services: Services, client: httpx.AsyncClient, gpt: OpenAIDouble) -> None:
        self.services = services
        self.client = client
        self.gpt = gpt

    async def account(self) -> TestAccount:
        return await create_test_account(self.services, credits=5000)

    async def chat(self, account: TestAccount, body: dict[str, Any]) -> httpx.Response:
        # Sent as compact JSON, so the size of a forwarded prompt is known to the byte.
        headers = {**account.headers, "content-type": "application/json"}
        return await self.client.post("/v1/chat", content=orjson.dumps(body), headers=headers)

    async def stream(self, account: TestAccount, body: dict[str, Any]) -> list[bytes]:
        """The data of each event of a streamed answer, in order."""
        answer = await self.chat(account, {**body, "stream": True})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream")
        return [event.data for event in sse.Parser().feed(answer.content)]

    async def kept(self, account: TestAccount) -> float:
        """Credits the account's one chat call kept once settled, read from the ledger."""
        await gateway(self.services).ledger.flush()
        entries = (await self.client.get("/v1/account/ledger", headers=account.headers)).json()["data"]
        chat = [entry for entry in entries if entry["reference"].startswith("chat_")]
        assert sorted(entry["kind"] for entry in chat) == ["charge", "settle"], chat
        return round(-sum(float(entry["amount"]) for entry in chat), 3)


@pytest.fixture
async def stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    gpt, claude = await OpenAIDouble().start(), await AnthropicDouble().start()
    monkeypatch.setenv("NATIVE_TEST_OPENAI_KEY", gpt.key)
    monkeypatch.setenv("NATIVE_TEST_ANTHROPIC_KEY", claude.key)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "providers:\n"
        f"  dbl-openai: {{type: openai, api_key_env: NATIVE_TEST_OPENAI_KEY, base_url: '{gpt.url}'}}\n"
        f"  dbl-anthropic: {{type: anthropic, api_key_env: NATIVE_TEST_ANTHROPIC_KEY, base_url: '{claude.url}'}}\n"
        "models:\n" + _model("native-gpt", "dbl-openai") + _model("native-claude", "dbl-anthropic")
    )
    services = await make_services(make_settings(catalog=catalog))
    try:
        yield Stack(services, make_client(services), gpt)
    finally:
        await gpt.stop()
        await claude.stop()


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **extra}


def closing(data: list[bytes]) -> dict[str, Any]:
    """The last chunk, after checking the stream ends with it and one `[DONE]`."""
    assert data[-1] == sse.DONE and data.count(sse.DONE) == 1, data
    chunks = [orjson.loads(item) for item in data[:-1]]
    assert [chunk for chunk in chunks if "creditsUsed" in chunk] == chunks[-1:], "creditsUsed comes once, last"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1, "the closing chunk belongs to the same stream"
    last: dict[str, Any] = chunks[-1]
    return last


def text_of(data: list[bytes]) -> str:
    chunks = [orjson.loads(item) for item in data if item != sse.DONE]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


@pytest.mark.parametrize(
    ("model", "streamed", "answered"),
    [("native-gpt", 11 + 5 * 2, 11 + 5 * 2), ("native-claude", 8 + 0.3 + 4 * 2, 8 + 0.3 + 7 * 2)],
    ids=["forwarded", "translated"],
)
async def test_the_finish_chunk_carries_the_settled_credits(
    stack: Stack, model: str, streamed: float, answered: float
) -> None:
    streamed_by = await stack.account()
    data = await stack.stream(streamed_by, chat_body(model))
    last = closing(data)
    assert last["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in last or last["usage"] is None, "no usage chunk when the client did not ask"
    assert last["creditsUsed"] == pytest.approx(streamed)
    assert await stack.kept(streamed_by) == pytest.approx(streamed), "what was said is what was billed"

    answered_to = await stack.account()
    answer = await stack.chat(answered_to, chat_body(model))
    assert answer.json()["creditsUsed"] == pytest.approx(answered)
    assert await stack.kept(answered_to) == pytest.approx(answered)
    assert text_of(data) == answer.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", ["native-gpt", "native-claude"], ids=["forwarded", "translated"])
async def test_with_include_usage_the_usage_chunk_carries_them(stack: Stack, model: str) -> None:
    account = await stack.account()
    data = await stack.stream(account, chat_body(model, stream_options={"include_usage": True}))
    last = closing(data)
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 11
    finishes = [orjson.loads(item)["choices"] for item in data[:-2]]
    assert finishes[-1][0]["finish_reason"] == "stop", "the finish chunk still comes, just before"
    assert last["creditsUsed"] == await stack.kept(account)


async def test_a_local_model_closes_with_the_minimum_charge(stack: Stack) -> None:
    account = await stack.account()
    data = await stack.stream(account, chat_body("local-echo", messages=[{"role": "user", "content": "one two"}]))
    assert text_of(data) == "one two"
    last = closing(data)
    assert last["model"] == "local-echo"
    assert last["creditsUsed"] == 2, "the per-message minimum"
    assert await stack.kept(account) == 2


async def test_an_upstream_that_leaves_out_done_still_gets_one(stack: Stack) -> None:
    account = await stack.account()
    stack.gpt.omit_done = True
    data = await stack.stream(account, chat_body("native-gpt"))
    assert closing(data)["creditsUsed"] == 21


async def test_a_failed_stream_ends_with_the_error_and_no_credits(stack: Stack) -> None:
    account = await stack.account()
    stack.gpt.error_after(3)  # the role chunk, "Hello ", "from "
    body = chat_body("native-gpt")
    data = await stack.stream(account, body)
    assert sse.DONE not in data
    assert orjson.loads(data[-1])["error"]["message"] == "The server had an error"
    assert not any(b"creditsUsed" in item for item in data)
    # billed for what was produced: the prompt sized from the body, "Hello from " counted
    input_tokens = math.ceil(len(orjson.dumps({**body, "stream": True})) / 4)
    assert await stack.kept(account) == input_tokens + 2 * math.ceil(len("Hello from ") / 4)
