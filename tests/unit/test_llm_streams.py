"""Stream translation traps, each of which broke some gateway once."""

from __future__ import annotations

import orjson
import pytest

from hypereal.errors import UpstreamError
from hypereal.llm import sse
from hypereal.llm.anthropic_stream import StreamDecoder as AnthropicDecoder
from hypereal.llm.anthropic_stream import StreamEncoder as AnthropicEncoder
from hypereal.llm.openai_chat_stream import StreamDecoder as ChatDecoder
from hypereal.llm.openai_chat_stream import StreamEncoder as ChatEncoder
from hypereal.llm.openai_responses_stream import StreamDecoder as ResponsesDecoder
from hypereal.llm.openai_responses_stream import StreamEncoder as ResponsesEncoder
from hypereal.llm.taps import AnthropicTap, OpenAIChatTap
from hypereal.llm.types import (
    Accumulator,
    BlockStart,
    BlockStop,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingPart,
    ToolInputDelta,
    ToolUsePart,
    Usage,
)


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return orjson.dumps({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def anthropic_events(raw: bytes) -> list[dict[str, object]]:
    return [orjson.loads(event.data) for event in sse.Parser().feed(raw)]


def test_sse_parser_handles_any_chunk_boundary_and_crlf() -> None:
    stream = b'event: a\r\ndata: {"x":\r\ndata: 1}\r\n\r\n: comment\n\ndata: [DONE]\n\n'
    for size in range(1, len(stream)):
        parser = sse.Parser()
        events = [event for start in range(0, len(stream), size) for event in parser.feed(stream[start : start + size])]
        assert [(event.event, event.data) for event in events] == [("a", b'{"x":\n1}'), (None, b"[DONE]")]


def test_sse_parser_yields_an_unterminated_last_event_on_close() -> None:
    parser = sse.Parser()
    assert list(parser.feed(b'data: {"a": 1}')) == []
    assert [event.data for event in parser.close()] == [b'{"a": 1}']


def test_tool_arguments_split_across_chunks_are_reassembled() -> None:
    decoder = ChatDecoder()
    accumulator = Accumulator()
    pieces = ['{"loc', 'ation": "Pa', 'ris"}']
    events = decoder.feed(
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": ""}}
                ]
            }
        )
    )
    for piece in pieces:
        events += decoder.feed(chunk({"tool_calls": [{"index": 0, "id": None, "function": {"arguments": piece}}]}))
    events += decoder.feed(chunk({}, "tool_calls")) + decoder.feed(b"[DONE]")
    for event in events:
        accumulator.add(event)
    response = accumulator.response()
    assert response.stop_reason == "tool_use"
    assert len(response.content) == 1
    call = response.content[0]
    assert isinstance(call, ToolUsePart)
    assert (call.id, call.name, call.input()) == ("call_1", "w", {"location": "Paris"})


def test_usage_only_in_the_last_chunk_reaches_the_end_event() -> None:
    decoder = ChatDecoder()
    events = decoder.feed(chunk({"content": "hi"})) + decoder.feed(chunk({}, "stop"))
    assert not any(isinstance(event, StreamEnd) for event in events)
    events += decoder.feed(
        orjson.dumps({"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    )
    events += decoder.feed(b"[DONE]")
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.usage == Usage(input_tokens=5, output_tokens=2)


def test_stream_that_finished_without_done_ends_normally() -> None:
    decoder = ChatDecoder()
    decoder.feed(chunk({"content": "hi"}))
    decoder.feed(chunk({}, "stop"))
    end = decoder.finish()
    assert isinstance(end[-1], StreamEnd) and end[-1].stop_reason == "end_turn" and end[-1].usage is None


def test_stream_cut_before_finishing_is_an_upstream_error() -> None:
    decoder = ChatDecoder()
    decoder.feed(chunk({"content": "hi"}))
    with pytest.raises(UpstreamError, match="ended before"):
        decoder.finish()
    anthropic = AnthropicDecoder()
    anthropic.feed("message_start", b'{"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}')
    with pytest.raises(UpstreamError):
        anthropic.finish()
    with pytest.raises(UpstreamError):
        ResponsesDecoder().finish()


def test_error_in_mid_stream_is_raised_from_every_decoder() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        ChatDecoder().feed(b'{"error": {"message": "overloaded", "type": "server_error"}}')
    with pytest.raises(UpstreamError, match="Overloaded"):
        AnthropicDecoder().feed("error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    with pytest.raises(UpstreamError, match="boom"):
        ResponsesDecoder().feed(
            "response.failed", b'{"type":"response.failed","response":{"error":{"message":"boom"}}}'
        )


def _text_block(index: int, text: str) -> list[StreamEvent]:
    events: list[StreamEvent] = [BlockStart(index, TextPart(""))]
    if text:
        events.append(TextDelta(index, text))
    return [*events, BlockStop(index)]


def test_empty_text_blocks_never_reach_anthropic_or_responses_clients() -> None:
    events: list[StreamEvent] = [StreamStart("x", "m"), *_text_block(0, ""), *_text_block(1, "hello")]
    events += [BlockStart(2, ToolUsePart("t1", "tool", "")), ToolInputDelta(2, "{}"), BlockStop(2)]
    events.append(StreamEnd("tool_use", Usage(1, 1)))
    anthropic = AnthropicEncoder("m")
    payloads = anthropic_events(b"".join(anthropic.encode(event) for event in events))
    starts = [p for p in payloads if p["type"] == "content_block_start"]
    assert [(p["index"], p["content_block"]["type"]) for p in starts] == [(0, "text"), (1, "tool_use")]  # type: ignore[index]
    stops = [p["index"] for p in payloads if p["type"] == "content_block_stop"]
    assert stops == [0, 1]
    responses = ResponsesEncoder("m", {})
    raw = b"".join(responses.encode(event) for event in events)
    added = [
        orjson.loads(e.data)["item"]["type"] for e in sse.Parser().feed(raw) if e.event == "response.output_item.added"
    ]
    assert added == ["message", "function_call"]


def test_thinking_signature_survives_chat_to_anthropic_round_trip() -> None:
    decoder = AnthropicDecoder()
    raw = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    accumulator = Accumulator()
    for name, payload in raw:
        for event in decoder.feed(name, orjson.dumps(payload)):
            accumulator.add(event)
    response = accumulator.response()
    assert response.content == [ThinkingPart("hm", "SIG", "anthropic")]
    assert response.usage == Usage(input_tokens=3, output_tokens=4)


def test_chat_encoder_sends_usage_only_when_asked() -> None:
    events: list[StreamEvent] = [StreamStart("x", "m"), *_text_block(0, "hi"), StreamEnd("end_turn", Usage(3, 1))]
    quiet = b"".join(ChatEncoder("m").encode(event) for event in events)
    chatty = b"".join(ChatEncoder("m", include_usage=True).encode(event) for event in events)
    assert b'"prompt_tokens"' not in quiet and quiet.endswith(b"data: [DONE]\n\n")
    assert b'"prompt_tokens":3' in chatty


def test_taps_read_usage_and_hold_back_the_unrequested_usage_chunk() -> None:
    tap = OpenAIChatTap(forward_usage=False)
    usage_chunk = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
    assert tap.observe(sse.Event(None, chunk({"content": "abcd"}), b"raw1")) == b"raw1"
    assert tap.observe(sse.Event(None, usage_chunk, b"raw2")) is None
    assert tap.observe(sse.Event(None, b"[DONE]", b"raw3")) == b"raw3"
    assert tap.usage == Usage(input_tokens=7, output_tokens=2) and tap.output_chars == 4 and tap.finished

    anthropic = AnthropicTap()
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 2}}}
    anthropic.observe(sse.Event("message_start", orjson.dumps(start), b""))
    anthropic.observe(sse.Event("message_delta", b'{"type":"message_delta","usage":{"output_tokens":9}}', b""))
    assert anthropic.usage == Usage(input_tokens=7, output_tokens=9, cached_input_tokens=2)
