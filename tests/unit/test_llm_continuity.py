"""Reasoning tokens keep their vendor through every codec, and go back only to it."""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.api.anthropic import ANTHROPIC
from hypereal.api.openai import OPENAI_CHAT, OPENAI_RESPONSES
from hypereal.llm import anthropic, continuity, openai_responses, responses_store, sse
from hypereal.llm.anthropic_stream import StreamEncoder as AnthropicEncoder
from hypereal.llm.openai_responses_stream import StreamDecoder as ResponsesDecoder
from hypereal.llm.types import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    RedactedThinkingPart,
    SignatureDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
)

OPENAI_TOKEN = "gAAAAABoOpenAI"
CLAUDE_SIGNATURE = "EqQBCgIYAhIMClaude"


def _assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def _thinking(signature: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": "hm", "signature": signature}


def reasoning(token: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": token}


# ---------------------------------------------------------------- decoders


def test_an_anthropic_client_s_signature_is_anthropic_s_unless_tagged() -> None:
    body = {
        "model": "m",
        "messages": [
            _assistant(
                _thinking(CLAUDE_SIGNATURE),
                _thinking(continuity.tag(OPENAI_TOKEN, "openai")),
                _thinking(continuity.UNSIGNED),
            )
        ],
    }
    parts = anthropic.decode_request(body).messages[0].content
    assert parts == [
        ThinkingPart("hm", CLAUDE_SIGNATURE, "anthropic"),
        ThinkingPart("hm", OPENAI_TOKEN, "openai"),
        ThinkingPart("hm"),
    ]


def test_a_responses_client_s_encrypted_content_is_openai_s_unless_tagged() -> None:
    items = [
        reasoning(OPENAI_TOKEN),
        reasoning(continuity.tag(CLAUDE_SIGNATURE, "anthropic")),
        reasoning(continuity.tag(continuity.REDACTED + "opaque", "anthropic")),
    ]
    parts = openai_responses.decode_request({"model": "m", "input": items}).messages[0].content
    assert parts == [
        ThinkingPart("", OPENAI_TOKEN, "openai"),
        ThinkingPart("", CLAUDE_SIGNATURE, "anthropic"),
        RedactedThinkingPart("opaque"),
    ]


def test_upstream_decoders_name_their_own_vendor() -> None:
    message = {"content": [_thinking(CLAUDE_SIGNATURE)]}
    assert anthropic.decode_response(message).content == [ThinkingPart("hm", CLAUDE_SIGNATURE, "anthropic")]
    output = {"output": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": OPENAI_TOKEN}]}
    assert openai_responses.decode_response(output).content == [ThinkingPart("", OPENAI_TOKEN, "openai")]
    decoder = ResponsesDecoder()
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": OPENAI_TOKEN}
    events = decoder.feed("response.output_item.added", orjson.dumps({"output_index": 0, "item": item}))
    events += decoder.feed("response.output_item.done", orjson.dumps({"output_index": 0, "item": item}))
    assert [event for event in events if isinstance(event, SignatureDelta)] == [
        SignatureDelta(0, OPENAI_TOKEN, "openai")
    ]


# ---------------------------------------------------------------- encoders to clients


def test_anthropic_clients_get_their_own_signatures_as_is_and_others_tagged() -> None:
    response = ChatResponse(
        "msg_1",
        "m",
        [
            ThinkingPart("a", CLAUDE_SIGNATURE, "anthropic"),
            ThinkingPart("b", OPENAI_TOKEN, "openai"),
            ThinkingPart("c"),
        ],
    )
    blocks = anthropic.encode_response(response, "m")["content"]
    assert [block["signature"] for block in blocks] == [
        CLAUDE_SIGNATURE,
        "hypereal.openai." + OPENAI_TOKEN,
        continuity.UNSIGNED,
    ]


def test_anthropic_stream_tags_a_foreign_signature_once_and_signs_unsigned_thinking() -> None:
    encoder = AnthropicEncoder("m")
    events = [
        BlockStart(0, ThinkingPart("")),
        SignatureDelta(0, "gAAAA", "openai"),
        SignatureDelta(0, "ABo", "openai"),
        BlockStop(0),
        BlockStart(1, ThinkingPart("")),
        ThinkingDelta(1, "hm"),
        BlockStop(1),
    ]
    sent = [orjson.loads(event.data) for event in sse.Parser().feed(b"".join(map(encoder.encode, events)))]
    signatures = [
        (payload["index"], payload["delta"]["signature"])
        for payload in sent
        if payload["type"] == "content_block_delta" and payload["delta"]["type"] == "signature_delta"
    ]
    assert signatures == [(0, "hypereal.openai.gAAAA"), (0, "ABo"), (1, continuity.UNSIGNED)]


def test_responses_clients_get_openai_s_tokens_as_is_and_anthropic_s_tagged() -> None:
    response = ChatResponse(
        "resp_1",
        "m",
        [
            ThinkingPart("a", OPENAI_TOKEN, "openai"),
            ThinkingPart("b", CLAUDE_SIGNATURE, "anthropic"),
            RedactedThinkingPart("opaque"),
        ],
    )
    output = openai_responses.encode_response(response, "m", {})["output"]
    assert [item["encrypted_content"] for item in output] == [
        OPENAI_TOKEN,
        "hypereal.anthropic." + CLAUDE_SIGNATURE,
        "hypereal.anthropic.redacted.opaque",
    ]
    # and each comes back as it went
    back = openai_responses.decode_request({"model": "m", "input": output}).messages[0].content
    assert back == response.content


# ---------------------------------------------------------------- encoders to upstreams


def _request(*parts: Any, thinking: bool = True) -> ChatRequest:
    messages = [Message("user", [TextPart("hi")]), Message("assistant", list(parts))]
    return ChatRequest("m", messages, thinking_budget=2048 if thinking else None)


def test_anthropic_gets_back_only_its_own_signatures() -> None:
    body = anthropic.encode_request(
        _request(ThinkingPart("a", CLAUDE_SIGNATURE, "anthropic"), ThinkingPart("b", OPENAI_TOKEN, "openai"))
    )
    assert body["messages"][1]["content"] == [_thinking(CLAUDE_SIGNATURE) | {"thinking": "a"}]
    assert body["thinking"]["type"] == "enabled"


def test_thinking_is_turned_off_when_the_answered_tool_call_lost_its_foreign_thinking() -> None:
    request = _request(ThinkingPart("b", OPENAI_TOKEN, "openai"), ToolUsePart("call_1", "get_weather", "{}"))
    request.messages.append(Message("user", [ToolResultPart("call_1", [TextPart("Sunny")])]))
    body = anthropic.encode_request(request)
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use"]
    assert "thinking" not in body


def test_openai_gets_no_reasoning_item_through_translation() -> None:
    body = openai_responses.encode_request(_request(ThinkingPart("b", OPENAI_TOKEN, "openai"), TextPart("ok")))
    assert [item["type"] for item in body["input"]] == ["message", "message"]


# ---------------------------------------------------------------- forwarded bodies


def test_a_forwarded_body_without_the_tag_is_not_walked() -> None:
    body = {"model": "m", "messages": [_assistant(_thinking(CLAUDE_SIGNATURE))]}
    assert ANTHROPIC.forwardable(body, orjson.dumps(body)) is body
    assert OPENAI_CHAT.forwardable(body, b'"hypereal.openai.x"') is body


def test_a_forwarded_anthropic_body_keeps_only_what_anthropic_issued() -> None:
    search = continuity.FOREIGN_SEARCH
    own_search = [
        {"type": "server_tool_use", "id": "srvtoolu_a", "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_a", "content": [{"encrypted_content": "Eq"}]},
    ]
    body = {
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "hi"},
            _assistant(
                _thinking(continuity.tag(CLAUDE_SIGNATURE, "anthropic")),
                {"type": "server_tool_use", "id": "srvtoolu_ws_1", "name": "web_search", "input": {"query": "q"}},
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_ws_1",
                    "content": [{"encrypted_content": search}],
                },
                *own_search,
                {"type": "text", "text": "found", "citations": [{"url": "u", "encrypted_index": search}]},
            ),
            {"role": "user", "content": "and?"},
            _assistant(_thinking(continuity.tag(OPENAI_TOKEN, "openai"))),
        ],
    }
    out = ANTHROPIC.forwardable(body, orjson.dumps(body))
    assert out["messages"] == [
        {"role": "user", "content": "hi"},
        _assistant(_thinking(CLAUDE_SIGNATURE), *own_search, {"type": "text", "text": "found"}),
        {"role": "user", "content": "and?"},
    ]
    assert out["thinking"] == body["thinking"], "the last assistant turn calls no tool"


def test_a_forwarded_responses_body_keeps_only_openai_s_reasoning() -> None:
    items = [
        reasoning(OPENAI_TOKEN),
        reasoning(continuity.tag(CLAUDE_SIGNATURE, "anthropic")),
        reasoning(continuity.UNSIGNED),
        reasoning(continuity.tag(OPENAI_TOKEN, "openai")),
        {"type": "message", "role": "user", "content": "hi"},
    ]
    body = {"model": "m", "input": items}
    out = OPENAI_RESPONSES.forwardable(body, orjson.dumps(body))
    assert out["input"] == [reasoning(OPENAI_TOKEN), reasoning(OPENAI_TOKEN), items[-1]]


def test_stored_responses_keep_each_token_s_vendor() -> None:
    conversation = [
        Message(
            "assistant", [ThinkingPart("a", CLAUDE_SIGNATURE, "anthropic"), ThinkingPart("b", OPENAI_TOKEN, "openai")]
        )
    ]
    stored = responses_store.encode_conversation(conversation)
    assert responses_store.decode_conversation(stored) == conversation
