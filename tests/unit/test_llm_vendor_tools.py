"""Tools a vendor defines, on upstreams of another vendor: Anthropic's server tools and the
client tools Claude knows, OpenAI's web search in both its APIs, and the citations a
search leaves in each wire format's streams."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from hypereal.catalog.providers import AnthropicConfig, EchoConfig, OpenAICompatibleConfig, OpenAIConfig
from hypereal.llm import anthropic, anthropic_tools, openai_chat, openai_responses, sse
from hypereal.llm.anthropic_stream import StreamEncoder as AnthropicEncoder
from hypereal.llm.openai_chat_stream import StreamDecoder as ChatDecoder
from hypereal.llm.openai_chat_stream import StreamEncoder as ChatEncoder
from hypereal.llm.types import (
    Accumulator,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChoiceEvent,
    Citation,
    CitationDelta,
    HostedTool,
    Message,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    Usage,
    WebSearchPart,
)
from hypereal.providers.anthropic import AnthropicProvider
from hypereal.providers.echo import EchoProvider
from hypereal.providers.openai import OpenAIProvider
from hypereal.providers.openai_compatible import OpenAICompatibleProvider

BASH = {"type": "bash_20250124", "name": "bash"}
EDITOR = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 10000}
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
PAGE = Citation("https://www.python.org/downloads/", "Download Python")


def messages_request(*tools: dict[str, Any]) -> ChatRequest:
    body = {"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "tools": list(tools)}
    return replace(anthropic.decode_request(body), model="upstream-model")


def test_bash_and_the_text_editor_are_functions_elsewhere_and_go_back_to_anthropic_as_declared() -> None:
    old_editor = {"type": "text_editor_20250124", "name": "str_replace_editor"}
    request = messages_request(BASH, EDITOR, old_editor)
    bash, editor, old = request.tools
    assert (bash.name, bash.parameters) == ("bash", anthropic_tools.BASH_SCHEMA)
    assert editor.name == "str_replace_based_edit_tool" and old.name == "str_replace_editor"
    assert editor.parameters["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
    assert "undo_edit" in old.parameters["properties"]["command"]["enum"], "only the older versions can undo"
    assert request.hosted_tools == []

    functions = openai_chat.encode_request(request)["tools"]
    assert [tool["function"]["name"] for tool in functions] == [
        "bash",
        "str_replace_based_edit_tool",
        "str_replace_editor",
    ]
    assert functions[0]["function"]["parameters"] == anthropic_tools.BASH_SCHEMA
    assert anthropic.encode_request(request)["tools"] == [BASH, EDITOR, old_editor]


@pytest.mark.parametrize("version", ["web_search_20250305", "web_search_20260209"])
def test_anthropic_web_search_is_openai_s_web_search_with_the_settings_both_have(version: str) -> None:
    location = {"type": "approximate", "city": "Paris", "country": "FR", "timezone": "Europe/Paris"}
    search = {**SEARCH, "type": version, "allowed_domains": ["python.org"], "user_location": location}
    request = messages_request(search)
    (hosted,) = request.hosted_tools
    assert (hosted.vendor, hosted.field) == ("anthropic", "tools.0")
    body = openai_responses.encode_request(request)
    assert body["tools"] == [
        {"type": "web_search", "filters": {"allowed_domains": ["python.org"]}, "user_location": location}
    ]
    assert body["include"] == ["web_search_call.action.sources"], "so that the search results can be shown"
    assert anthropic.encode_request(request)["tools"] == [search], "as declared, max_uses and all"
    assert request.dropped == []
    assert "web_search_options" not in openai_chat.encode_request(request, searches=True)
    assert request.dropped == [f"tools[0]:{version}"], "a search limited to some domains is not run unlimited"
    without_domains = messages_request({**SEARCH, "user_location": location})
    assert openai_chat.encode_request(without_domains, searches=True)["web_search_options"] == {
        "user_location": {
            "type": "approximate",
            "approximate": {key: location[key] for key in ("city", "country", "timezone")},
        }
    }


def test_a_search_that_must_leave_domains_out_is_dropped_rather_than_widened() -> None:
    request = messages_request(BASH, {**SEARCH, "blocked_domains": ["example.com"]})
    assert [tool["name"] for tool in openai_responses.encode_request(request)["tools"]] == ["bash"]
    assert request.dropped == ["tools[1]:web_search_20250305"]
    refused = forced_refusal(request)
    assert refused.startswith("Tool type 'web_search_20250305' with 'blocked_domains' cannot run")


def forced_refusal(request: ChatRequest) -> str:
    """The 400 a client forcing the request's first hosted tool gets from a Responses route."""
    refused = openai_responses.refusal(request)
    assert refused is not None and refused.fields == {"field": request.hosted_tools[0].field}
    return refused.message


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"type": "memory_20250818", "name": "memory"},
    ],
)
def test_tools_only_anthropic_runs_are_dropped_elsewhere_by_name(tool: dict[str, Any]) -> None:
    for encode in (openai_responses.encode_request, openai_chat.encode_request):
        request = messages_request(BASH, tool)
        assert [tool["type"] for tool in encode(request)["tools"]] == ["function"]
        assert request.dropped == [f"tools[1]:{tool['type']}"]
        assert forced_refusal(request).startswith(f"Tool type '{tool['type']}' cannot run at this")
    request = messages_request(BASH, tool)
    assert anthropic.encode_request(request)["tools"] == [BASH, tool]
    assert request.dropped == []


def test_chat_completions_web_search_options_are_a_web_search_on_every_upstream() -> None:
    options = {
        "search_context_size": "low",
        "user_location": {"type": "approximate", "approximate": {"country": "GB", "city": "London"}},
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "news?"}], "web_search_options": options}
    request = openai_chat.decode_request(body)
    assert request.hosted_tools == [
        HostedTool(
            {
                "type": "web_search",
                "user_location": {"type": "approximate", "city": "London", "country": "GB"},
                "search_context_size": "low",
            },
            "web_search_options",
        )
    ]
    assert openai_responses.encode_request(request)["tools"] == [request.hosted_tools[0].spec]
    assert anthropic.encode_request(request)["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "user_location": {"type": "approximate", "city": "London", "country": "GB"},
        }
    ]
    assert openai_chat.encode_request(request, searches=True)["web_search_options"] == options
    assert request.dropped == []
    assert "web_search_options" not in openai_chat.encode_request(request), "only search models search"
    assert request.dropped == ["web_search_options:web_search"]


def test_chat_completions_answers_give_their_annotations_as_citations() -> None:
    text = "Python 3.14 is out."
    annotation = {
        "type": "url_citation",
        "url_citation": {"start_index": 0, "end_index": len(text), "url": PAGE.url, "title": PAGE.title},
    }
    message = {"role": "assistant", "content": text, "annotations": [annotation, {"type": "file_citation"}]}
    response = openai_chat.decode_response({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    assert response.content == [TextPart(text, [PAGE])]
    assert openai_chat.encode_response(response, "m")["choices"][0]["message"]["annotations"] == [annotation]


# ---------------------------------------------------------------- Chat Completions streams


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(event.data) for event in sse.Parser().feed(raw) if event.data != sse.DONE]


def cited_text(index: int, *pieces: str, citations: tuple[Citation, ...] = (PAGE,)) -> list[StreamEvent]:
    """A text block whose citations come first, as Anthropic streams them."""
    return [
        BlockStart(index, TextPart("")),
        *(CitationDelta(index, citation) for citation in citations),
        *(TextDelta(index, piece) for piece in pieces),
        BlockStop(index),
    ]


def test_a_chat_stream_sends_the_annotations_once_before_the_finish_spanning_their_text() -> None:
    other = Citation("https://docs.python.org/3/whatsnew/", "What's New")
    events = [
        StreamStart("s", "m"),
        *cited_text(0, "Based on the search, ", citations=()),
        *cited_text(1, "Python 3.14 ", "is out.", citations=(PAGE, other)),
        StreamEnd("end_turn", Usage(5, 7)),
    ]
    sent = chunks(b"".join(map(ChatEncoder("m").encode, events)))
    deltas = [chunk["choices"][0]["delta"] for chunk in sent]
    content = "".join(delta.get("content") or "" for delta in deltas)
    (annotated,) = [delta for delta in deltas if "annotations" in delta]
    assert deltas.index(annotated) == len(deltas) - 2 and sent[-1]["choices"][0]["finish_reason"] == "stop"
    spans = [annotation["url_citation"] for annotation in annotated["annotations"]]
    assert [content[span["start_index"] : span["end_index"]] for span in spans] == ["Python 3.14 is out."] * 2
    assert [(span["url"], span["title"]) for span in spans] == [(PAGE.url, PAGE.title), (other.url, other.title)]

    # Read back, the citations are the text's again.
    decoder, accumulator = ChatDecoder(), Accumulator()
    for chunk in sent:
        for event in decoder.feed(orjson.dumps(chunk)):
            accumulator.add(event)
    for event in decoder.finish():
        accumulator.add(event)
    (text,) = accumulator.response().content
    assert text == TextPart(content, [PAGE, other])


def test_each_choice_of_a_chat_stream_has_its_own_annotations() -> None:
    events: list[StreamEvent] = []
    for choice in (0, 1):
        events += [ChoiceEvent(choice, StreamStart("s", "m"))]
        events += [ChoiceEvent(choice, event) for event in cited_text(0, "x" * (choice + 1))]
        events += [ChoiceEvent(choice, StreamEnd("end_turn"))]
    events.append(StreamEnd("end_turn", Usage(2, 2)))
    sent = chunks(b"".join(map(ChatEncoder("m").encode, events)))
    annotated = [
        (choice["index"], choice["delta"]["annotations"][0]["url_citation"]["end_index"])
        for chunk in sent
        for choice in chunk["choices"]
        if "annotations" in choice["delta"]
    ]
    assert annotated == [(0, 1), (1, 2)]
    finishes = [choice["index"] for chunk in sent for choice in chunk["choices"] if choice["finish_reason"]]
    assert finishes == [0, 1]


# ---------------------------------------------------------------- Anthropic streams


def test_anthropic_clients_get_the_search_blocks_and_the_citations_held_until_their_text_opens() -> None:
    search = WebSearchPart("ws_1", "latest python", [PAGE])
    events = [
        StreamStart("s", "m"),
        BlockStart(0, search),
        BlockStop(0),
        *cited_text(1, "Python 3.14 is out."),
        *cited_text(2, citations=(PAGE,)),  # a block that stays empty takes its citations with it
        StreamEnd("end_turn", Usage(5, 7)),
    ]
    sent = [
        orjson.loads(event.data) for event in sse.Parser().feed(b"".join(map(AnthropicEncoder("m").encode, events)))
    ]
    blocks = [
        (event["index"], event["content_block"]["type"]) for event in sent if event["type"] == "content_block_start"
    ]
    assert blocks == [(0, "server_tool_use"), (1, "web_search_tool_result"), (2, "text")]
    deltas = [(event["index"], event["delta"]["type"]) for event in sent if event["type"] == "content_block_delta"]
    assert deltas == [(0, "input_json_delta"), (2, "citations_delta"), (2, "text_delta")]
    result = sent[5]["content_block"]
    assert result == {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_ws_1",
        "content": [
            {
                "type": "web_search_result",
                "url": PAGE.url,
                "title": PAGE.title,
                "encrypted_content": "hypereal.openai.",
                "page_age": None,
            }
        ],
    }
    assert [event["type"] for event in sent].count("content_block_stop") == 3


def test_a_failed_search_reaches_anthropic_clients_as_a_result_error() -> None:
    response = openai_responses.decode_response(
        {"output": [{"type": "web_search_call", "id": "ws_2", "status": "failed", "action": {"query": "q"}}]}
    )
    call, result = anthropic.encode_response(response, "m")["content"]
    assert call["type"] == "server_tool_use" and call["input"] == {"query": "q"}
    assert result["content"] == {"type": "web_search_tool_result_error", "error_code": "unavailable"}


# ---------------------------------------------------------------- providers


def openai_request(model: str, *hosted: dict[str, Any]) -> ChatRequest:
    tools = [HostedTool(spec, f"tools.{index}") for index, spec in enumerate(hosted)]
    return ChatRequest(model, [Message("user", [TextPart("hi")])], hosted_tools=tools)


def test_providers_tell_before_any_call_whether_they_run_the_hosted_tools() -> None:
    openai = OpenAIProvider(OpenAIConfig(base_url="http://127.0.0.1:9/v1"))
    compatible = OpenAICompatibleProvider(OpenAICompatibleConfig(base_url="http://127.0.0.1:9/v1"))
    claude = AnthropicProvider(AnthropicConfig(base_url="http://127.0.0.1:9"))
    echo = EchoProvider(EchoConfig())
    search, files = {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}
    for provider in (openai, compatible, claude, echo):
        assert provider.refusal(openai_request("m")) is None
    assert openai.refusal(openai_request("gpt-5", search)) is None
    assert openai.refusal(openai_request("gpt-4o-search-preview", search)) is None
    assert claude.refusal(openai_request("claude", search)) is None
    refusals = [
        openai.refusal(openai_request("gpt-5", files)),
        compatible.refusal(openai_request("llama", search)),
        claude.refusal(openai_request("claude", files)),
        echo.refusal(openai_request("local-echo", search)),
    ]
    upstreams = [
        "OpenAI Responses, reached through translation",
        "Chat Completions",
        "Anthropic Messages",
        "local-echo",
    ]
    for refusal, upstream in zip(refusals, upstreams, strict=True):
        assert refusal is not None and f"({upstream})" in refusal.message


def test_openai_searches_behind_chat_completions_only_with_its_search_models() -> None:
    openai = OpenAIProvider(OpenAIConfig(base_url="http://127.0.0.1:9/v1"))
    asking = {"model": "m", "messages": [], "web_search_options": {}}
    assert not openai.forwards("openai-chat", "gpt-4o", asking), "the Responses API runs the search"
    assert openai.forwards("openai-chat", "gpt-4o-search-preview", asking)
    assert openai.forwards("openai-chat", "gpt-4o", {**asking, "web_search_options": None})
    assert openai.native_choices("gpt-4o") and not openai.native_choices("gpt-4o", hosted_tools=True)
    assert openai.native_choices("gpt-5-search-api", hosted_tools=True)
    compatible = OpenAICompatibleProvider(OpenAICompatibleConfig(base_url="http://127.0.0.1:9/v1"))
    assert compatible.forwards("openai-chat", "any", asking), "the server judges its own body"
    searching = OpenAICompatibleProvider(
        OpenAICompatibleConfig(base_url="http://127.0.0.1:9/v1", options={"search_models": ["web-*"]})
    )
    assert searching.refusal(openai_request("web-llama", {"type": "web_search"})) is None
