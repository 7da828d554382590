"""Custom (freeform) tools and hosted tools across translation: the traps in streaming them."""

from __future__ import annotations

import json

import orjson
import pytest

from hypereal.llm import anthropic, openai_chat, openai_responses, sse
from hypereal.llm.anthropic_stream import StreamDecoder as AnthropicDecoder
from hypereal.llm.anthropic_stream import StreamEncoder as AnthropicEncoder
from hypereal.llm.custom_tools import InputUnwrapper
from hypereal.llm.openai_chat_stream import StreamDecoder as ChatDecoder
from hypereal.llm.openai_responses_stream import StreamEncoder as ResponsesEncoder
from hypereal.llm.responses_store import decode_conversation, encode_conversation
from hypereal.llm.types import (
    Accumulator,
    BlockStart,
    BlockStop,
    ChatRequest,
    HostedTool,
    Message,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextPart,
    ToolInputDelta,
    ToolUsePart,
    Usage,
    WebSearchPart,
)

# Quotes, backslashes, newlines, tabs, accents, a character outside the BMP and a control character.
PATCH = '*** Begin Patch\n*** Update File: a.py\n-print("hi")\n+print("h\\u00e9 \\"q\\"\t✓ 🌍 \x01")\n*** End Patch\n'
WRAPPED = {
    "ascii-escaped": json.dumps({"input": PATCH}),
    "raw unicode": json.dumps({"input": PATCH}, ensure_ascii=False),
    "spaced": '{ "input" :\n  ' + json.dumps(PATCH) + " }",
}


def anthropic_tool_stream(arguments: str, size: int) -> list[tuple[str, bytes]]:
    """An Anthropic stream whose one tool_use block's input arrives in pieces of `size` characters."""
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "apply_patch", "input": {}},
        },
    ]
    for start in range(0, len(arguments), size):
        delta = {"type": "input_json_delta", "partial_json": arguments[start : start + size]}
        events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    return [(str(event["type"]), orjson.dumps(event)) for event in events]


def decode_anthropic(raw: list[tuple[str, bytes]], names: frozenset[str]) -> list[StreamEvent]:
    decoder = AnthropicDecoder(names)
    return [event for name, data in raw for event in decoder.feed(name, data)]


@pytest.mark.parametrize("arguments", list(WRAPPED.values()), ids=list(WRAPPED))
def test_custom_input_split_anywhere_in_anthropic_json_comes_out_whole_and_exact(arguments: str) -> None:
    for size in range(1, len(arguments) + 1):
        events = decode_anthropic(anthropic_tool_stream(arguments, size), frozenset({"apply_patch"}))
        pieces = [event.partial_json for event in events if isinstance(event, ToolInputDelta)]
        assert "".join(pieces) == PATCH, f"pieces of {size}"
        if size < 8:
            assert len(pieces) > 10, "the text streams as it arrives, not all at the end"
        accumulator = Accumulator()
        for event in events:
            accumulator.add(event)
        assert accumulator.response().content == [ToolUsePart("toolu_1", "apply_patch", PATCH, custom=True)]


def test_custom_input_split_anywhere_in_chat_arguments_comes_out_whole_and_exact() -> None:
    arguments = WRAPPED["ascii-escaped"]
    for size in (1, 2, 3, 5, 6, 7, 11, len(arguments)):
        decoder = ChatDecoder(frozenset({"apply_patch"}))
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "apply_patch", "arguments": ""}}
        events = decoder.feed(orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
        for start in range(0, len(arguments), size):
            piece = {"index": 0, "function": {"arguments": arguments[start : start + size]}}
            events += decoder.feed(orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]}))
        events += decoder.feed(orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
        events += decoder.feed(b"[DONE]")
        accumulator = Accumulator()
        for event in events:
            accumulator.add(event)
        assert accumulator.response().content == [ToolUsePart("call_1", "apply_patch", PATCH, custom=True)]


def test_wrapped_json_of_another_shape_is_unwrapped_when_the_call_ends() -> None:
    unwrapper = InputUnwrapper()
    text = '{"note": "first", "input": "a\\nb"}'
    assert [unwrapper.feed(char) for char in text] == [""] * len(text)
    assert unwrapper.finish() == "a\nb"

    not_text = InputUnwrapper()
    assert not_text.feed('{"input": {"path": "x"}}') == ""
    assert not_text.finish() == '{"input": {"path": "x"}}', "passed on as it came rather than lost"


def test_escapes_and_surrogate_pairs_are_held_until_whole() -> None:
    unwrapper = InputUnwrapper()
    fed = [unwrapper.feed(piece) for piece in ('{"input":"a\\', "nb\\ud83c", "\\udf0d", "\\u00", "e9", '"}')]
    assert fed == ["a", "\nb", "🌍", "", "é", ""]
    assert unwrapper.finish() == ""


def test_calls_of_other_tools_are_left_as_json() -> None:
    events = decode_anthropic(anthropic_tool_stream('{"city": "Paris"}', 4), frozenset({"apply_patch_other"}))
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)
    assert accumulator.response().content == [ToolUsePart("toolu_1", "apply_patch", '{"city": "Paris"}')]


def custom_call_events(pieces: list[str]) -> list[StreamEvent]:
    events: list[StreamEvent] = [StreamStart("r", "m"), BlockStart(0, ToolUsePart("call_1", "apply_patch", "", True))]
    events += [ToolInputDelta(0, piece) for piece in pieces]
    return [*events, BlockStop(0), StreamEnd("tool_use", Usage(3, 4))]


@pytest.mark.parametrize("pieces", [[PATCH[:7], PATCH[7:30], PATCH[30:]], []], ids=["split", "empty"])
def test_anthropic_clients_get_a_custom_call_as_input_json(pieces: list[str]) -> None:
    encoder = AnthropicEncoder("m")
    raw = b"".join(encoder.encode(event) for event in custom_call_events(pieces))
    payloads = [orjson.loads(event.data) for event in sse.Parser().feed(raw)]
    partial = "".join(p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta")
    assert json.loads(partial) == {"input": "".join(pieces)}


def test_responses_clients_get_custom_input_events_and_the_whole_item() -> None:
    encoder = ResponsesEncoder("m", {})
    raw = b"".join(encoder.encode(event) for event in custom_call_events([PATCH[:10], PATCH[10:]]))
    events = [(event.event, orjson.loads(event.data)) for event in sse.Parser().feed(raw)]
    names = [name for name, _ in events]
    assert names[2:7] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    added, done = events[2][1]["item"], events[6][1]["item"]
    assert added == {
        "id": added["id"],
        "type": "custom_tool_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "apply_patch",
        "input": "",
    }
    assert done == {**added, "status": "completed", "input": PATCH}
    assert events[5][1]["input"] == PATCH
    assert events[-1][1]["response"]["output"] == [done]


def test_local_shell_calls_go_back_as_local_shell_items_when_the_client_offered_it() -> None:
    action = '{"command": ["ls", "-la"], "working_directory": "/repo"}'
    events: list[StreamEvent] = [StreamStart("r", "m"), BlockStart(0, ToolUsePart("call_1", "local_shell", ""))]
    events += [ToolInputDelta(0, action[:9]), ToolInputDelta(0, action[9:]), BlockStop(0), StreamEnd("tool_use")]
    encoder = ResponsesEncoder("m", {"tools": [{"type": "local_shell"}]})
    raw = b"".join(encoder.encode(event) for event in events)
    items = [orjson.loads(e.data) for e in sse.Parser().feed(raw) if e.event and e.event.startswith("response.output")]
    assert [item["type"] for item in items] == ["response.output_item.added", "response.output_item.done"]
    assert items[1]["item"] == {
        "id": items[1]["item"]["id"],
        "type": "local_shell_call",
        "status": "completed",
        "call_id": "call_1",
        "action": {"type": "exec", "command": ["ls", "-la"], "working_directory": "/repo"},
    }


def test_a_search_cut_short_by_pause_turn_still_reaches_the_client() -> None:
    start = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    raw: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": start},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"query'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '": "x"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "pause_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    events = decode_anthropic([(str(p["type"]), orjson.dumps(p)) for p in raw], frozenset())
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)
    response = accumulator.response()
    assert response.content == [WebSearchPart("srvtoolu_1", "x")]
    assert response.stop_reason == "pause_turn"


def test_stored_conversations_keep_custom_calls_and_searches() -> None:
    conversation = [
        Message("user", [TextPart("fix it")]),
        Message(
            "assistant", [WebSearchPart("ws_1", "python", failed=True), ToolUsePart("c1", "apply_patch", PATCH, True)]
        ),
    ]
    assert decode_conversation(encode_conversation(conversation)) == conversation


# ---------------------------------------------------------------- hosted tools


def request_with(*hosted: dict[str, object]) -> ChatRequest:
    tools = [HostedTool(spec, f"tools.{index}") for index, spec in enumerate(hosted)]
    return ChatRequest("m", [Message("user", [TextPart("hi")])], hosted_tools=tools)


@pytest.mark.parametrize(
    "tool", ["file_search", "code_interpreter", "computer_use_preview", "image_generation", "mcp", "shell"]
)
def test_hosted_tools_without_a_counterpart_are_dropped_and_reported_by_name(tool: str) -> None:
    chat = request_with({"type": "web_search"}, {"type": tool})
    assert anthropic.encode_request(chat)["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    assert chat.dropped == [f"tools[1]:{tool}"]
    assert anthropic.refusal(chat) is not None, "a route that runs them all is preferred"
    responses = request_with({"type": "web_search"}, {"type": tool})
    assert openai_responses.encode_request(responses)["tools"] == [{"type": "web_search"}]
    assert responses.dropped == [f"tools[1]:{tool}"]


@pytest.mark.parametrize("tool", ["web_search", "web_search_preview", "web_search_preview_2025_03_11"])
def test_web_search_runs_at_anthropic_and_through_responses_but_not_behind_chat_completions(tool: str) -> None:
    chat = request_with({"type": tool, "filters": {"allowed_domains": ["python.org"]}})
    assert anthropic.encode_request(chat)["tools"] == [
        {"type": "web_search_20250305", "name": "web_search", "allowed_domains": ["python.org"]}
    ]
    assert openai_responses.encode_request(chat)["tools"] == [chat.hosted_tools[0].spec]
    assert chat.dropped == []
    body = openai_chat.encode_request(chat)
    assert "web_search_options" not in body and "tools" not in body
    assert chat.dropped == [f"tools[0]:{tool}"]
