"""Per-token billing of chat calls, read back from the ledger of a running server.

Prices (`tests.integration.chat_support`) make every settlement an exact figure:

- the OpenAI double reports 11 prompt tokens and one completion token per chunk;
- the Anthropic double reports 8 fresh + 3 cached input tokens and 7 output tokens (one per
  delta when streaming).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from hypereal.llm import anthropic as anthropic_codec
from hypereal.llm import sse, tokens
from tests.conftest import Server
from tests.integration.chat_support import Stack, chat_body, running_stack


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


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


# ---------------------------------------------------------------- n choices


def test_forwarded_choices_settle_in_full_rather_than_at_one_choice(stack: Stack) -> None:
    client = stack.account()
    # Five output tokens is the most one choice may cost; four choices may cost four times as much.
    answer = client.post("/chat/completions", chat_body("bill-gpt", n=4, max_tokens=5))
    assert answer.status_code == 200
    assert [choice["index"] for choice in answer.json()["choices"]] == [0, 1, 2, 3]
    assert stack.gpt.requests[-1].body["n"] == 4, "the upstream makes the choices itself"
    assert answer.json()["usage"]["completion_tokens"] == 4 * 5
    assert client.settled_cost() == 11 + 4 * 5 * 2


def test_choices_that_cannot_be_covered_are_402_before_any_upstream_call(stack: Stack) -> None:
    client = stack.account(credits=300)
    seen = len(stack.gpt.requests), len(stack.claude.requests)
    for model in ("bill-gpt", "bill-claude"):
        answer = client.post("/chat/completions", chat_body(model, n=4))  # 4 × 50 output tokens = 400 credits
        assert answer.status_code == 402, model
        assert answer.json()["error"]["type"] == "insufficient_quota"
    assert (len(stack.gpt.requests), len(stack.claude.requests)) == seen
    assert client.chat_entries() == []
    assert client.post("/chat/completions", chat_body("bill-claude")).status_code == 200, "one choice is covered"


def test_a_route_that_calls_once_per_choice_reserves_each_prompt(stack: Stack) -> None:
    client = stack.account(credits=250)
    body = chat_body("bill-gpt", n=3, max_tokens=10, messages=[{"role": "user", "content": "word " * 80}])
    # one prompt of about 110 tokens and 3 × 10 output tokens: covered when the upstream makes the choices
    assert client.post("/chat/completions", body).status_code == 200
    seen = len(stack.claude.requests)
    refused = client.post("/chat/completions", {**body, "model": "bill-claude"})
    assert refused.status_code == 402, "three prompts of about 110 tokens are not"
    assert len(stack.claude.requests) == seen


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_a_choice_refused_fails_the_whole_call_and_refunds_it(stack: Stack, stream: bool) -> None:
    client = stack.account()
    seen = len(stack.claude.requests)
    stack.claude.fail_next(500)
    answer = client.post("/chat/completions", chat_body("bill-claude", n=3, stream=stream))
    assert answer.status_code == 502, "an error, not a partial set of choices"
    assert answer.json()["error"]["type"] == "server_error"
    assert len(stack.claude.requests) > seen
    assert [entry["kind"] for entry in client.chat_entries()] == ["charge", "refund"]
    assert client.balance() == 5000


def test_a_choice_broken_mid_stream_ends_the_stream_and_bills_what_was_produced(stack: Stack) -> None:
    client = stack.account()
    stack.claude.error_after(5)  # one of the calls: message_start, ping, block start, "Hello ", "from "
    body = chat_body("bill-claude", n=2, stream=True)
    with httpx.stream(
        "POST", client.api + "/chat/completions", content=orjson.dumps(body), headers=client.headers
    ) as response:
        assert response.status_code == 200
        data = [event.data for event in sse.Parser().feed(response.read())]
    assert sse.DONE not in data
    assert orjson.loads(data[-1])["error"]["message"] == "Upstream error in stream: Overloaded"
    cost = client.settled_cost()
    assert [entry["kind"] for entry in client.chat_entries()] == ["charge", "settle"]
    # the prompt of each call that started (11 tokens by message_start), and from "Hello from " of
    # output to both answers whole, as far as the other call got before it was stopped
    least, most = math.ceil(len("Hello from ") / 4), math.ceil(2 * len("Hello from Claude: hi") / 4)
    assert 11 + 2 * least <= cost <= 22 + 2 * most


def test_choices_cut_by_the_client_bill_what_was_produced(stack: Stack) -> None:
    client = stack.account()
    words = " ".join(f"word{index}" for index in range(400))
    body = {
        "model": "bill-slow",
        "max_tokens": 500,
        "n": 2,
        "stream": True,
        "messages": [{"role": "user", "content": words}],
    }
    with httpx.stream(
        "POST", client.api + "/chat/completions", content=orjson.dumps(body), headers=client.headers
    ) as response:
        lines = (line for line in response.iter_lines() if line)
        received = [orjson.loads(next(lines).removeprefix("data: ")) for _ in range(6)]
    assert {chunk["choices"][0]["index"] for chunk in received} == {0, 1}
    prompt = tokens.request_tokens(anthropic_codec.decode_request({**body, "n": 1}))
    cost = client.settled_cost()
    assert 2 * prompt < cost < 2 * prompt + 2 * 500, "each prompt sent, and part of the output"
