"""Per-token billing of chat calls, read back from the ledger of a running server.

Prices in the test catalog make one input token cost 1 credit, one output token 2 credits
and one cached input token 0.1 credit, so every settlement is an exact figure:

- the OpenAI double reports 11 prompt tokens and one completion token per chunk;
- the Anthropic double reports 8 fresh + 3 cached input tokens and 7 output tokens (one per
  delta when streaming).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from hypereal.llm import anthropic as anthropic_codec
from hypereal.llm import tokens
from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble

PRICING = "{input_per_mtok: 1000000, output_per_mtok: 2000000, cached_input_per_mtok: 100000}"


def _model(model_id: str, *routes: str) -> str:
    lines = "".join(f"      - {{provider: {provider}, model: upstream-{model_id}}}\n" for provider in routes)
    return (
        f"  - id: {model_id}\n    category: llm\n    name: {model_id}\n    description: A billing test model.\n"
        f"    max_output_tokens: 1000\n    pricing: {PRICING}\n    routes:\n{lines}"
    )


@dataclass
class Stack:
    server: Server
    gpt: OpenAIDouble
    claude: AnthropicDouble

    def account(self, credits: int = 5000) -> Client:
        made = httpx.post(
            self.server.url + "/api/v1/admin/accounts",
            json={"name": "billing", "credits": credits},
            headers=ADMIN_HEADERS,
        ).json()
        key = httpx.post(
            self.server.url + f"/api/v1/admin/accounts/{made['id']}/keys", json={}, headers=ADMIN_HEADERS
        ).json()["key"]
        return Client(self.server.url + "/api/v1", key)


@dataclass
class Client:
    api: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "content-type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.api + path, content=orjson.dumps(body), headers=self.headers, timeout=30)

    def balance(self) -> float:
        return float(httpx.get(self.api + "/account", headers=self.headers).json()["balance"])

    def chat_entries(self) -> list[dict[str, Any]]:
        entries = httpx.get(self.api + "/account/ledger", headers=self.headers).json()["data"]
        return [entry for entry in reversed(entries) if entry["reference"].startswith("chat_")]

    def settled_cost(self, wait_seconds: float = 10.0) -> float:
        """Credits kept by the one chat call of this account, once it is settled or refunded."""
        deadline = time.monotonic() + wait_seconds
        while True:
            entries = self.chat_entries()
            if any(entry["kind"] in ("settle", "refund") for entry in entries) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        kinds = [entry["kind"] for entry in entries]
        assert kinds[0] == "charge" and len(kinds) == 2, kinds
        return round(-sum(entry["amount"] for entry in entries), 3)


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with BackgroundServer(OpenAIDouble()) as gpt, BackgroundServer(AnthropicDouble()) as claude:
        catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
        catalog.write_text(
            "providers:\n"
            f"  dbl-openai: {{type: openai, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{gpt.url}'}}\n"
            f"  dbl-anthropic: {{type: anthropic, api_key_env: DOUBLE_ANTHROPIC_KEY, base_url: '{claude.url}'}}\n"
            "  slow-echo: {type: local-echo, options: {token_delay_seconds: 0.05}}\n"
            "models:\n"
            + _model("bill-gpt", "dbl-openai")
            + _model("bill-claude", "dbl-anthropic")
            + _model("bill-slow", "slow-echo")
            + _model("bill-fallback", "dbl-openai", "slow-echo")
        )
        server = start_server(
            env={"HYPEREAL_CATALOG": str(catalog), "DOUBLE_OPENAI_KEY": gpt.key, "DOUBLE_ANTHROPIC_KEY": claude.key}
        )
        yield Stack(server, gpt, claude)


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_forwarded_call_settles_to_reported_usage(stack: Stack) -> None:
    client = stack.account()
    answer = client.post("/chat/completions", chat_body("bill-gpt"))
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Hello from OpenAI: hi"
    assert client.settled_cost() == 11 * 1 + 5 * 2
    assert client.balance() == 5000 - 21


def test_cached_input_is_billed_at_the_cached_price(stack: Stack) -> None:
    client = stack.account()
    answer = client.post("/messages", {**chat_body("bill-claude")})
    assert answer.status_code == 200
    assert client.settled_cost() == pytest.approx(8 * 1 + 3 * 0.1 + 7 * 2)


def test_translated_call_settles_to_reported_usage(stack: Stack) -> None:
    client = stack.account()
    answer = client.post("/chat/completions", chat_body("bill-claude"))
    assert answer.status_code == 200
    assert answer.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    assert client.settled_cost() == pytest.approx(22.3)


def test_stream_bills_usage_the_client_did_not_ask_to_see(stack: Stack) -> None:
    client = stack.account()
    with httpx.stream(
        "POST",
        client.api + "/chat/completions",
        content=orjson.dumps(chat_body("bill-gpt", stream=True)),
        headers=client.headers,
    ) as response:
        text = response.read().decode()
    assert '"choices":[]' not in text, "the usage chunk the gateway asked for is held back"
    assert text.rstrip().endswith("data: [DONE]")
    # role chunk + four words = five chunks, one completion token each
    assert client.settled_cost() == 11 + 5 * 2


def test_upstream_error_refunds_everything(stack: Stack) -> None:
    client = stack.account()
    stack.gpt.fail_next(500)
    answer = client.post("/chat/completions", chat_body("bill-gpt"))
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "server_error"
    assert [entry["kind"] for entry in client.chat_entries()] == ["charge", "refund"]
    assert client.balance() == 5000


def test_upstream_rejection_is_a_400_in_the_surface_shape_and_refunded(stack: Stack) -> None:
    client = stack.account()
    stack.claude.fail_next(400)
    answer = client.post("/messages", chat_body("bill-claude"))
    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert client.balance() == 5000


def test_fallback_route_answers_when_the_first_fails(stack: Stack) -> None:
    client = stack.account()
    stack.gpt.fail_next(503)
    answer = client.post("/chat/completions", chat_body("bill-fallback"))
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "hi"
    # the echo route's usage: 8 prompt tokens (overheads + "hi") and 1 output token
    assert client.settled_cost() == 8 + 2 * 1
    assert [entry["kind"] for entry in client.chat_entries()] == ["charge", "settle"]


def test_insufficient_credits_is_402_before_any_upstream_call(stack: Stack) -> None:
    client = stack.account(credits=10)
    seen = len(stack.gpt.requests)
    answer = client.post("/chat/completions", chat_body("bill-gpt"))
    assert answer.status_code == 402
    assert answer.json()["error"]["type"] == "insufficient_quota"
    assert len(stack.gpt.requests) == seen
    assert client.chat_entries() == []
    anthropic_answer = client.post("/messages", chat_body("bill-claude"))
    assert anthropic_answer.status_code == 402
    assert anthropic_answer.json()["error"]["type"] == "billing_error"


def test_forwarded_stream_cut_by_upstream_bills_what_was_produced(stack: Stack) -> None:
    client = stack.account()
    body = chat_body("bill-gpt", stream=True)
    stack.gpt.cut_after(3)  # the role chunk, "Hello ", "from "
    with httpx.stream(
        "POST", client.api + "/chat/completions", content=orjson.dumps(body), headers=client.headers
    ) as response:
        text = response.read().decode()
    assert "ended before it finished" in text
    input_tokens = math.ceil(len(orjson.dumps(body)) / 4)
    output_tokens = math.ceil(len("Hello from ") / 4)
    assert client.settled_cost() == input_tokens + 2 * output_tokens


def test_translated_stream_cut_by_upstream_error_bills_what_was_produced(stack: Stack) -> None:
    client = stack.account()
    body = chat_body("bill-gpt", stream=True)
    stack.gpt.error_after(3)
    with httpx.stream("POST", client.api + "/messages", content=orjson.dumps(body), headers=client.headers) as response:
        text = response.read().decode()
    assert "event: error" in text and "message_stop" not in text
    input_tokens = tokens.request_tokens(anthropic_codec.decode_request(body))
    assert client.settled_cost() == input_tokens + 2 * math.ceil(len("Hello from ") / 4)


def test_forwarded_anthropic_stream_error_is_passed_on_and_billed(stack: Stack) -> None:
    client = stack.account()
    stack.claude.error_after(5)  # message_start, ping, block start, "Hello ", "from "
    with httpx.stream(
        "POST",
        client.api + "/messages",
        content=orjson.dumps(chat_body("bill-claude", stream=True)),
        headers=client.headers,
    ) as response:
        text = response.read().decode()
    assert text.count("event: error") == 1 and "overloaded_error" in text
    # 8 fresh + 3 cached input tokens from message_start, 11 characters of output
    assert client.settled_cost() == 11 + 2 * math.ceil(len("Hello from ") / 4)


def test_stream_cut_by_the_client_bills_part_of_the_reservation(stack: Stack) -> None:
    client = stack.account()
    words = " ".join(f"word{index}" for index in range(400))
    body = {"model": "bill-slow", "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": words}]}
    with httpx.stream(
        "POST", client.api + "/chat/completions", content=orjson.dumps(body), headers=client.headers
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
    assert any("word0" in line for line in received)
    cost = client.settled_cost()
    reservation = tokens.request_tokens(anthropic_codec.decode_request(body)) + 2 * 1000
    assert 2 <= cost < reservation / 2
