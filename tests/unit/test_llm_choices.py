"""`n` choices: what a reservation covers, which providers make them, and how one-choice
calls are merged (`hypereal.llm.fanout`) and streamed to a Chat Completions client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from hypereal.catalog.providers import AnthropicConfig, EchoConfig, OpenAICompatibleConfig, OpenAIConfig
from hypereal.catalog.schema import Pricing
from hypereal.errors import Unavailable, UpstreamError
from hypereal.llm import fanout, pricing, sse, tokens
from hypereal.llm.openai_chat_stream import StreamDecoder as ChatDecoder
from hypereal.llm.openai_chat_stream import StreamEncoder as ChatEncoder
from hypereal.llm.types import (
    Accumulator,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ChoiceEvent,
    Message,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolInputDelta,
    ToolUsePart,
    Usage,
)
from hypereal.providers.anthropic import AnthropicProvider
from hypereal.providers.echo import EchoProvider
from hypereal.providers.openai import OpenAIProvider
from hypereal.providers.openai_compatible import OpenAICompatibleProvider

PRICES = Pricing(input_per_mtok=125, output_per_mtok=1000)
REQUEST = ChatRequest(model="m", messages=[Message("user", [TextPart("pick a colour")])], n=3)


def texts(response: ChatResponse) -> list[str]:
    """The text of each choice, the main one first."""
    extras = [[part.text for part in choice.content if isinstance(part, TextPart)] for choice in response.extra_choices]
    return [response.text(), *("".join(extra) for extra in extras)]


def test_a_reservation_covers_each_choice_and_each_prompt_sent() -> None:
    assert pricing.reservation(PRICES, 8000, 16000) == 1000 + 16000
    assert pricing.reservation(PRICES, 8000, 16000, choices=4) == 1000 + 4 * 16000, "one call, one prompt"
    assert pricing.reservation(PRICES, 8000, 16000, choices=4, prompts=4) == 4 * 1000 + 4 * 16000


def test_providers_say_whether_one_call_makes_every_choice() -> None:
    openai = OpenAIProvider(OpenAIConfig(base_url="http://127.0.0.1:9/v1"))
    assert openai.native_choices("gpt-4o")
    assert not openai.native_choices("gpt-5-codex"), "the Responses API has no n"
    assert openai.forwards("openai-chat", "gpt-4o")
    assert not openai.forwards("openai-chat", "gpt-5-codex"), "translated to the Responses API"
    assert openai.forwards("openai-responses", "gpt-5-codex")
    compatible = OpenAICompatibleProvider(OpenAICompatibleConfig(base_url="http://127.0.0.1:9/v1"))
    assert compatible.native_choices("my-codex")
    anthropic = AnthropicProvider(AnthropicConfig(base_url="http://127.0.0.1:9"))
    assert not anthropic.native_choices("claude-sonnet-4-5")
    assert not EchoProvider(EchoConfig()).native_choices("local-echo")
    assert fanout.needed(anthropic, "claude-sonnet-4-5", 2)
    assert not fanout.needed(anthropic, "claude-sonnet-4-5", 1)
    assert not fanout.needed(openai, "gpt-4o", 2)


# ---------------------------------------------------------------- non-streaming


async def test_answers_merge_into_one_response_with_the_usage_summed() -> None:
    calls: list[int] = []

    async def one(request: ChatRequest) -> ChatResponse:
        assert request.n == 1
        calls.append(len(calls))
        number = len(calls)
        usage = Usage(input_tokens=10, output_tokens=number, cached_input_tokens=2)
        return ChatResponse(f"id{number}", "m", [TextPart(f"answer {number}")], "end_turn", usage)

    merged = await fanout.complete(one, REQUEST)
    assert texts(merged) == ["answer 1", "answer 2", "answer 3"]
    assert merged.id == "id1"
    assert merged.usage == Usage(input_tokens=30, output_tokens=6, cached_input_tokens=6)


async def test_a_failed_answer_cancels_the_others_and_is_the_whole_calls() -> None:
    cancelled: list[int] = []
    started = 0

    async def one(request: ChatRequest) -> ChatResponse:
        nonlocal started
        started += 1
        if started == 2:
            await asyncio.sleep(0)
            raise Unavailable("busy")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(started)
            raise
        raise AssertionError("never answers")

    with pytest.raises(Unavailable):
        await fanout.complete(one, REQUEST)
    assert len(cancelled) == 2


# ---------------------------------------------------------------- streaming


class Upstream:
    """Streams of one choice each; `script[k]` says how call k behaves."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.closed: list[int] = []
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        number = len(self.requests)
        self.requests.append(request)
        plan = self.script[number]
        try:
            if plan == "refuse":
                await asyncio.sleep(0.01)
                raise Unavailable("busy")
            if plan == "hang":
                await asyncio.Event().wait()
            yield StreamStart(f"id{number}", "m", Usage(input_tokens=0 if plan == "quiet" else 10))
            if plan == "stall":
                await asyncio.Event().wait()
            yield BlockStart(0, TextPart(""))
            yield TextDelta(0, f"answer {number}")
            if plan == "break":
                raise UpstreamError("Upstream error in stream: gone")
            yield BlockStop(0)
            yield StreamEnd("end_turn", None if plan == "quiet" else Usage(input_tokens=10, output_tokens=2))
        finally:
            self.closed.append(number)


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_streams_merge_into_choice_events_and_one_summed_end() -> None:
    upstream = Upstream("ok", "ok", "ok")
    events = await collect(fanout.stream(upstream.stream, REQUEST))
    assert all(request.n == 1 for request in upstream.requests)
    *choices, end = events
    assert all(isinstance(event, ChoiceEvent) for event in choices)
    assert end == StreamEnd("end_turn", Usage(input_tokens=30, output_tokens=6))
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)
    assert texts(accumulator.response()) == ["answer 0", "answer 1", "answer 2"]
    assert accumulator.output_chars == 3 * len("answer 0")
    assert accumulator.start_usage.input_tokens == 30
    assert sorted(upstream.closed) == [0, 1, 2]


async def test_a_stream_that_does_not_tell_its_usage_is_counted_for_each_prompt() -> None:
    upstream = Upstream("quiet", "ok")
    events = await collect(fanout.stream(upstream.stream, ChatRequest("m", REQUEST.messages, n=2)))
    starts = [
        event.event for event in events if isinstance(event, ChoiceEvent) and isinstance(event.event, StreamStart)
    ]
    estimate = tokens.request_tokens(ChatRequest("m", REQUEST.messages))
    assert sorted(start.usage.input_tokens for start in starts) == sorted([estimate, 10])
    assert events[-1] == StreamEnd("end_turn", None), "the gateway then counts the whole call"


async def test_nothing_goes_out_until_every_call_answered_and_a_refusal_fails_them_all() -> None:
    upstream = Upstream("stall", "refuse", "hang")
    merged = fanout.stream(upstream.stream, REQUEST)
    with pytest.raises(Unavailable):
        await anext(merged)
    assert sorted(upstream.closed) == [0, 1, 2], "the other calls are stopped and closed"


@pytest.mark.parametrize("other", ["stall", "hang"], ids=["opened", "not-opened"])
async def test_a_call_broken_mid_stream_ends_the_merged_stream_after_what_it_sent(other: str) -> None:
    upstream = Upstream(other, "break")
    merged = fanout.stream(upstream.stream, ChatRequest("m", REQUEST.messages, n=2))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError, match="gone"):
        async for event in merged:
            seen.append(event)
    assert ChoiceEvent(1, TextDelta(0, "answer 1")) in seen
    assert sorted(upstream.closed) == [0, 1]


async def test_closing_the_merged_stream_closes_every_call() -> None:
    upstream = Upstream("stall", "ok")
    merged = fanout.stream(upstream.stream, ChatRequest("m", REQUEST.messages, n=2))
    await anext(merged)
    await merged.aclose()
    assert sorted(upstream.closed) == [0, 1]


# ---------------------------------------------------------------- Chat Completions chunks


def two_choices() -> list[StreamEvent]:
    return [
        ChoiceEvent(0, StreamStart("a", "m")),
        ChoiceEvent(1, StreamStart("b", "m")),
        ChoiceEvent(0, BlockStart(0, TextPart(""))),
        ChoiceEvent(1, BlockStart(0, ToolUsePart("call_1", "get_weather", ""))),
        ChoiceEvent(0, TextDelta(0, "Sunny")),
        ChoiceEvent(1, ToolInputDelta(0, '{"city": "Paris"}')),
        ChoiceEvent(0, BlockStop(0)),
        ChoiceEvent(0, StreamEnd("end_turn", Usage(5, 1))),
        ChoiceEvent(1, BlockStop(0)),
        ChoiceEvent(1, StreamEnd("tool_use", Usage(5, 3))),
        StreamEnd("end_turn", Usage(10, 4)),
    ]


def test_each_choice_is_encoded_with_its_index_and_one_usage_chunk_ends_the_stream() -> None:
    encoder = ChatEncoder("m", include_usage=True)
    data = [event.data for event in sse.Parser().feed(b"".join(encoder.encode(event) for event in two_choices()))]
    assert data[-1] == sse.DONE
    chunks = [orjson.loads(item) for item in data[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1
    *choice_chunks, usage_chunk = chunks
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == 10
    assert usage_chunk["usage"]["completion_tokens"] == 4
    by_choice: dict[int, list[dict[str, object]]] = {0: [], 1: []}
    for chunk in choice_chunks:
        (choice,) = chunk["choices"]
        by_choice[choice["index"]].append(choice)
    assert [choice["delta"] for choice in by_choice[0]] == [
        {"role": "assistant", "content": ""},
        {"content": "Sunny"},
        {},
    ]
    assert [choice["finish_reason"] for choice in by_choice[0]] == [None, None, "stop"]
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert [choice["delta"] for choice in by_choice[1]] == [
        {"role": "assistant", "content": ""},
        {"tool_calls": [call]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]},
        {},
    ]
    assert by_choice[1][-1]["finish_reason"] == "tool_calls"
    assert choice_chunks[-1]["choices"][0]["index"] == 1, "the last finish chunk comes last, as finish() makes it"


def test_without_usage_the_stream_still_ends_with_a_finish_chunk() -> None:
    encoder = ChatEncoder("m")
    raw = b"".join(encoder.encode(event) for event in two_choices())
    data = [event.data for event in sse.Parser().feed(raw)]
    assert data[-1] == sse.DONE
    assert orjson.loads(data[-2])["choices"][0]["finish_reason"] == "tool_calls"
    assert [orjson.loads(item)["choices"][0]["finish_reason"] for item in data[:-1]].count(None) == 5


def choice_chunk(index: int, delta: dict[str, object], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {"id": "c", "model": "m", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    )


def test_an_upstream_that_makes_the_choices_itself_is_decoded_choice_by_choice() -> None:
    decoder = ChatDecoder(choices=2)
    call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}
    feed = [
        choice_chunk(0, {"role": "assistant", "content": ""}),
        choice_chunk(1, {"role": "assistant", "content": ""}),
        choice_chunk(0, {"content": "Hello "}),
        choice_chunk(1, {"tool_calls": [call]}),
        choice_chunk(0, {"content": "there"}),
        choice_chunk(1, {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
        choice_chunk(0, {}, "stop"),
        choice_chunk(1, {}, "tool_calls"),
        orjson.dumps({"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9}}),
        b"[DONE]",
    ]
    events = [event for data in feed for event in decoder.feed(data)]
    assert events[-1] == StreamEnd("end_turn", Usage(input_tokens=7, output_tokens=9))
    ends = [event for event in events if isinstance(event, ChoiceEvent) and isinstance(event.event, StreamEnd)]
    assert ends == [ChoiceEvent(0, StreamEnd("end_turn")), ChoiceEvent(1, StreamEnd("tool_use"))]
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)
    response = accumulator.response()
    assert response.text() == "Hello there"
    (extra,) = response.extra_choices
    assert extra.content == [ToolUsePart("call_9", "f", '{"a": 1}')] and extra.stop_reason == "tool_use"


def test_a_stream_of_choices_closed_before_each_finished_was_cut() -> None:
    decoder = ChatDecoder(choices=2)
    decoder.feed(choice_chunk(0, {"content": "a"}, "stop"))
    decoder.feed(choice_chunk(1, {"content": "b"}))
    with pytest.raises(UpstreamError, match="ended before it finished"):
        decoder.finish()


def test_one_choice_asked_for_ignores_the_others() -> None:
    decoder = ChatDecoder()
    events = decoder.feed(choice_chunk(1, {"content": "not mine"})) + decoder.feed(choice_chunk(0, {"content": "x"}))
    assert not any(isinstance(event, ChoiceEvent) for event in events)
    assert [event for event in events if isinstance(event, TextDelta)] == [TextDelta(0, "x")]
