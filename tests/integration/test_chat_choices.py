"""`n` choices of Chat Completions, asked through the official `openai` SDK, sync and async,
streaming and not, of a running server.

The Anthropic double and the OpenAI double's Responses API answer one choice per call, so
the gateway makes one call per choice and merges them; asked with a temperature, the
doubles number their answers, so each choice differs. The OpenAI double's Chat Completions
makes the choices itself, in one call, forwarded or translated. Each account's one call is
then read back from the ledger: it kept the price of the summed usage the client was shown
(prices in `tests.integration.chat_support`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest

from hypereal.llm import sse
from tests.conftest import Server
from tests.doubles import openai_double
from tests.integration.chat_support import Client, Stack, running_stack

PROMPT = "Hello gateway"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


def ask(model: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "n": n,
        "temperature": 1,
        "max_tokens": 50,
        **extra,
    }


@dataclass
class Answer:
    """The choices as the SDK parsed them, in the order of their index."""

    indexes: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    usage: Any = None

    def sampled(self, prefix: str) -> bool:
        """Each text is `prefix` with a number of its own: one sampled answer each."""
        numbers = [re.fullmatch(re.escape(prefix) + r" #(\d+)", text) for text in self.texts]
        return all(numbers) and len({match.group(1) for match in numbers if match}) == len(self.texts)


def from_completion(completion: Any) -> Answer:
    answer = Answer(usage=completion.usage)
    for choice in completion.choices:
        answer.indexes.append(choice.index)
        answer.texts.append(choice.message.content or "")
        answer.finish_reasons.append(choice.finish_reason)
    return answer


def from_chunks(chunks: list[Any]) -> Answer:
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
    indexes = sorted(texts)
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage) == 1 and chunks[-1].usage is not None, "one usage chunk, the last"
    return Answer(indexes, [texts[index] for index in indexes], [finishes[index] for index in indexes], usage[0])


def call_sync(account: Client, stream: bool, body: dict[str, Any]) -> Answer:
    sdk = openai.OpenAI(base_url=account.api, api_key=account.key, max_retries=0)
    if not stream:
        return from_completion(sdk.chat.completions.create(**body))
    chunks = sdk.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    return from_chunks(list(chunks))


async def call_async(account: Client, stream: bool, body: dict[str, Any]) -> Answer:
    sdk = openai.AsyncOpenAI(base_url=account.api, api_key=account.key, max_retries=0)
    if not stream:
        return from_completion(await sdk.chat.completions.create(**body))
    chunks = await sdk.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    return from_chunks([chunk async for chunk in chunks])


def check_claude_choices(stack: Stack, account: Client, answer: Answer, calls_before: int, stream: bool) -> None:
    assert answer.indexes == [0, 1, 2]
    assert answer.sampled(f"Hello from Claude: {PROMPT}"), answer.texts
    assert answer.finish_reasons == ["stop"] * 3
    assert len(stack.claude.requests) == calls_before + 3, "one upstream call per choice"
    # The double reports 8 + 3 cached input tokens a call, 7 output tokens (one per word when streaming).
    output = 3 * (len(answer.texts[0].split(" ")) if stream else 7)
    assert answer.usage.prompt_tokens == 3 * 11
    assert answer.usage.prompt_tokens_details.cached_tokens == 3 * 3
    assert answer.usage.completion_tokens == output
    assert account.settled_cost() == pytest.approx(3 * (8 + 3 * 0.1) + 2 * output)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_sync_choices_of_a_model_that_answers_one_per_call(stack: Stack, stream: bool) -> None:
    account, before = stack.account(), len(stack.claude.requests)
    answer = call_sync(account, stream, ask("bill-claude", 3))
    check_claude_choices(stack, account, answer, before, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_async_choices_of_a_model_that_answers_one_per_call(stack: Stack, stream: bool) -> None:
    account, before = stack.account(), len(stack.claude.requests)
    answer = await call_async(account, stream, ask("bill-claude", 3))
    check_claude_choices(stack, account, answer, before, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_each_choice_calls_its_tool(stack: Stack, stream: bool) -> None:
    account = stack.account()
    sdk = openai.OpenAI(base_url=account.api, api_key=account.key, max_retries=0)
    body = ask("bill-claude", 2, messages=[{"role": "user", "content": "call get_weather"}], tools=[WEATHER_TOOL])
    if stream:
        with sdk.chat.completions.stream(**body) as events:
            completion = events.get_final_completion()
    else:
        completion = sdk.chat.completions.create(**body)
    assert [choice.index for choice in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_choices_of_a_model_served_by_the_responses_api(stack: Stack, stream: bool) -> None:
    account, before = stack.account(), len(stack.gpt.requests)
    answer = await call_async(account, stream, ask("bill-codex", 2))
    assert answer.indexes == [0, 1]
    assert answer.sampled(f"Hello from OpenAI: {PROMPT}"), answer.texts
    sent = stack.gpt.requests[before:]
    assert [request.path for request in sent] == ["/v1/responses"] * 2
    assert all("n" not in request.body for request in sent)
    # 11 input and 5 output tokens a call
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (22, 10)
    assert account.settled_cost() == 22 + 2 * 10


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_a_translated_call_to_an_upstream_that_makes_the_choices_is_one_call(stack: Stack, stream: bool) -> None:
    account, before = stack.account(), len(stack.gpt.requests)
    stack.claude.fail_next(503)  # the first route is busy: the OpenAI route answers, translated
    answer = call_sync(account, stream, ask("bill-mixed", 3))
    assert answer.indexes == [0, 1, 2]
    assert answer.sampled(f"Hello from OpenAI: {PROMPT}"), answer.texts
    (sent,) = stack.gpt.requests[before:]
    assert sent.path == "/v1/chat/completions" and sent.body["n"] == 3
    # One prompt of 11 tokens; 5 output tokens a choice, or one a chunk when streaming (role + 6 words).
    output = 3 * (7 if stream else 5)
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, output)
    assert account.settled_cost() == 11 + 2 * output


def test_the_native_stream_of_choices_closes_with_the_settled_credits(stack: Stack) -> None:
    account = stack.account()
    with httpx.stream(
        "POST", account.api + "/chat", content=orjson.dumps(ask("bill-claude", 2, stream=True)), headers=account.headers
    ) as response:
        data = [event.data for event in sse.Parser().feed(response.read())]
    assert data[-1] == sse.DONE and data.count(sse.DONE) == 1
    chunks = [orjson.loads(item) for item in data[:-1]]
    finishes = [(choice["index"], choice["finish_reason"]) for chunk in chunks for choice in chunk["choices"]]
    assert sorted(finish for finish in finishes if finish[1]) == [(0, "stop"), (1, "stop")]
    assert [chunk for chunk in chunks if "creditsUsed" in chunk] == chunks[-1:]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop", "the last finish chunk carries them"
    assert chunks[-1]["creditsUsed"] == pytest.approx(account.settled_cost())


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_choices_of_a_web_search_on_an_openai_chat_model_take_one_responses_call_each(
    stack: Stack, stream: bool
) -> None:
    account, before = stack.account(), len(stack.gpt.requests)
    search = [{"role": "user", "content": "Please search for the latest Python"}]
    body = ask("bill-gpt", 2, messages=search, web_search_options={})
    sdk = openai.OpenAI(base_url=account.api, api_key=account.key, max_retries=0)
    if stream:
        with sdk.chat.completions.stream(**body, stream_options={"include_usage": True}) as events:
            completion = events.get_final_completion()
    else:
        completion = sdk.chat.completions.create(**body)
    answer = from_completion(completion)
    assert answer.indexes == [0, 1]
    assert answer.sampled(openai_double.SEARCH_ANSWER), answer.texts
    for choice, text in zip(completion.choices, answer.texts, strict=True):
        (cited,) = choice.message.annotations or []
        assert (cited.url_citation.url, cited.url_citation.start_index, cited.url_citation.end_index) == (
            openai_double.SEARCH_PAGE["url"],
            0,
            len(text),
        )
    sent = stack.gpt.requests[before:]
    assert [request.path for request in sent] == ["/v1/responses"] * 2, "the Responses API runs the search"
    assert all(request.body["tools"] == [{"type": "web_search"}] and "n" not in request.body for request in sent)
    # 11 input and 5 output tokens a call, each call billed
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (22, 10)
    assert account.settled_cost() == 22 + 2 * 10
