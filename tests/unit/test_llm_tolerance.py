"""The tolerance rule (`hypereal.llm.tolerance`): what a translation drops is reported, what
has a counterpart is mapped, and only what cannot be honoured is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hypereal.catalog.providers import EchoConfig
from hypereal.errors import ValidationFailed
from hypereal.llm import anthropic, namespace_tools, openai_chat, openai_responses, tolerance
from hypereal.llm.responses_store import decode_conversation, encode_conversation
from hypereal.llm.types import ChatRequest, HostedTool, Message, TextPart, ToolChoice
from hypereal.providers.echo import EchoProvider

HI = [{"role": "user", "content": "hi"}]


def messages_body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


def from_anthropic(**extra: Any) -> ChatRequest:
    return replace(anthropic.decode_request(messages_body(**extra)), model="upstream")


# ---------------------------------------------------------------- entries and the header


def test_drops_fold_by_shape_and_cache_control_is_one_entry() -> None:
    dropped: list[str] = []
    tolerance.drop(dropped, "messages.1.content.0", "document")
    tolerance.drop(dropped, "messages.3.content.0", "document")
    tolerance.drop(dropped, "messages.3.content.2", "document")
    tolerance.drop(dropped, "tools.4", "web_search")
    dropped += [tolerance.CACHE_CONTROL, tolerance.CACHE_CONTROL]
    tolerance.drop(dropped, "context_management")
    assert tolerance.summary(dropped) == [
        "messages[*].content[*]:document",
        "tools[4]:web_search",
        "cache_control",
        "context_management",
    ]


def test_entries_hold_only_safe_characters_whatever_the_client_sent() -> None:
    dropped: list[str] = []
    tolerance.drop(dropped, "messages.0", "wiz\r\nard, x: ☃" + "y" * 500)
    (entry,) = dropped
    assert entry.startswith("messages[0]:wiz??ard??x:??") and len(entry) == tolerance.MAX_ENTRY_CHARS
    assert entry.isascii() and "," not in entry and "\n" not in entry


def test_the_header_names_the_entries_and_counts_those_past_its_length() -> None:
    assert tolerance.header([]) == {}
    assert tolerance.header(["store", "tools[1]:web_search"]) == {"x-hypereal-dropped": "store,tools[1]:web_search"}
    many = [f"input[{index}]:item_reference" for index in range(500)]
    value = tolerance.header(many)["x-hypereal-dropped"]
    assert len(value) <= tolerance.MAX_HEADER_CHARS
    named = value.split(",")[:-1]
    assert named == many[: len(named)] and value.endswith(f",+{len(many) - len(named)} more")


def test_a_report_is_logged_once_with_the_model_and_route(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="hypereal.llm.tolerance")
    assert tolerance.report([], "gpt-5", "openai") == []
    assert caplog.records == []
    assert tolerance.report(["store", "store", "include"], "gpt-5", "anthropic") == ["store", "include"]
    (record,) = caplog.records
    assert record.getMessage() == "chat gpt-5 via anthropic dropped store,include"


# ---------------------------------------------------------------- settings without a counterpart


def test_extras_go_whole_to_the_client_s_format_and_alike_ones_between_openai_s_two() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "client_metadata": {"turn": "1"},
        "text": {"verbosity": "low"},
    }
    request = openai_responses.decode_request(body)
    assert request.extras == {
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "client_metadata": {"turn": "1"},
        "text.verbosity": "low",
    }
    chat = openai_chat.encode_request(replace(request, dropped=[]))
    assert (chat["prompt_cache_key"], chat["store"], chat["verbosity"]) == ("k", False, "low")
    dropped_by_chat = replace(request, dropped=[])
    openai_chat.encode_request(dropped_by_chat)
    assert dropped_by_chat.dropped == ["include", "client_metadata"]
    claude = replace(request, dropped=[])
    assert "prompt_cache_key" not in anthropic.encode_request(claude)
    assert claude.dropped == ["store", "include", "prompt_cache_key", "client_metadata", "text.verbosity"]


def test_the_encoder_s_own_settings_win_objects_merge_and_lists_gain_what_they_lack() -> None:
    request = ChatRequest("m", [], surface="openai-responses")
    request.extras = {"store": True, "include": ["a", "b"], "text.verbosity": "low", "reasoning": {"summary": "x"}}
    body = {"store": False, "include": ["b"], "text": {"format": {"type": "text"}}, "reasoning": {"effort": "low"}}
    assert tolerance.carry(body, request, "openai-responses") == {
        "store": False,
        "include": ["b", "a"],
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "reasoning": {"summary": "x", "effort": "low"},
    }
    assert request.dropped == []
    assert tolerance.carry({}, request, None) == {}, "a local model takes none"
    assert request.dropped == ["store", "include", "text.verbosity", "reasoning"]


# ---------------------------------------------------------------- thinking and effort


@pytest.mark.parametrize(("effort", "openai_effort"), [("low", "low"), ("high", "high"), ("max", "xhigh")])
def test_anthropic_effort_is_openai_s_reasoning_effort(effort: str, openai_effort: str) -> None:
    request = from_anthropic(thinking={"type": "adaptive"}, output_config={"effort": effort})
    assert openai_chat.encode_request(request)["reasoning_effort"] == openai_effort
    assert openai_responses.encode_request(request)["reasoning"] == {"effort": openai_effort, "summary": "auto"}
    body = anthropic.encode_request(request)
    assert (body["thinking"], body["output_config"]) == ({"type": "adaptive"}, {"effort": effort})
    assert request.dropped == []


def test_adaptive_thinking_without_an_effort_is_medium_elsewhere_and_adaptive_at_anthropic() -> None:
    request = from_anthropic(thinking={"type": "adaptive", "display": "omitted"})
    assert openai_chat.encode_request(request)["reasoning_effort"] == "medium"
    assert request.dropped == ["thinking.display"]
    body = anthropic.encode_request(replace(request, dropped=[]))
    assert body["thinking"] == {"type": "adaptive", "display": "omitted"} and "output_config" not in body


def test_an_anthropic_effort_without_thinking_stays_without_thinking_at_anthropic() -> None:
    body = anthropic.encode_request(from_anthropic(output_config={"effort": "low"}, temperature=0.5))
    assert "thinking" not in body and body["output_config"] == {"effort": "low"} and body["temperature"] == 0.5


def test_openai_s_effort_is_still_a_thinking_budget_at_anthropic() -> None:
    request = openai_chat.decode_request({"model": "m", "messages": HI, "reasoning_effort": "xhigh"})
    body = anthropic.encode_request(request)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 32768} and "output_config" not in body


def test_unknown_thinking_kinds_and_efforts_go_only_to_anthropic() -> None:
    request = from_anthropic(thinking={"type": "dreaming"}, output_config={"effort": "ultra", "format": {"x": 1}})
    assert request.reasoning_effort is None
    assert "reasoning_effort" not in openai_chat.encode_request(request)
    assert request.dropped == ["thinking", "output_config.effort", "output_config.format"]
    body = anthropic.encode_request(replace(request, dropped=[]))
    assert body["thinking"] == {"type": "dreaming"}
    assert body["output_config"] == {"effort": "ultra", "format": {"x": 1}}


def test_adaptive_thinking_goes_with_its_settings_where_anthropic_would_refuse_thinking() -> None:
    turns = [
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]},
    ]
    request = from_anthropic(thinking={"type": "adaptive", "display": "omitted"}, messages=turns)
    assert "thinking" not in anthropic.encode_request(request)


# ---------------------------------------------------------------- other fields


def test_a_long_user_id_is_dropped_on_the_way_to_openai_and_a_short_one_is_a_safety_identifier() -> None:
    long_id = '{"device_id":"' + "7" * 64 + '","account_uuid":"","session_id":"35b94802-4338-4995-8801-cd3525439c3d"}'
    request = from_anthropic(metadata={"user_id": long_id})
    body = openai_chat.encode_request(request)
    assert "user" not in body and "safety_identifier" not in body
    assert request.dropped == ["metadata.user_id"]
    assert anthropic.encode_request(request)["metadata"] == {"user_id": long_id}
    short = from_anthropic(metadata={"user_id": "u-1"})
    assert openai_responses.encode_request(short)["safety_identifier"] == "u-1"
    chat = openai_chat.decode_request({"model": "m", "messages": HI, "user": "u-2"})
    assert openai_chat.encode_request(chat)["user"] == "u-2", "an OpenAI client's own field as it came"


def test_unknown_tool_choices_are_dropped_on_every_surface() -> None:
    assert from_anthropic(tool_choice={"type": "sometimes"}).dropped == ["tool_choice:sometimes"]
    chat = openai_chat.decode_request({"model": "m", "messages": HI, "tool_choice": {"type": "allowed_tools"}})
    assert chat.tool_choice is None and chat.dropped == ["tool_choice:allowed_tools"]
    responses = openai_responses.decode_request({"model": "m", "input": "hi", "tool_choice": 7})
    assert responses.tool_choice is None and responses.dropped == ["tool_choice"]


@pytest.mark.parametrize(
    ("decode", "body", "field"),
    [
        (
            anthropic.decode_request,
            messages_body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "base64", "data": "JVBERi0="}}],
                    }
                ]
            ),
            "messages.0.content.0.source",
        ),
        (
            openai_chat.decode_request,
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG"}}]}],
            },
            "messages.0.content.0.type",
        ),
        (
            openai_responses.decode_request,
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
            "input.0.0.type",
        ),
    ],
)
def test_input_the_model_must_see_and_cannot_be_given_is_a_400_naming_it(
    decode: Any, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode(body)
    assert refused.value.fields == {"field": field}
    assert "cannot be sent to this model's upstream" in refused.value.message


def test_a_forced_hosted_tool_is_found_by_type_or_by_its_name() -> None:
    search = HostedTool({"type": "web_search_20250305", "name": "web_search"}, "tools.0", "anthropic")
    files = HostedTool({"type": "file_search"}, "tools.1")
    request = ChatRequest("m", [], hosted_tools=[search, files])
    assert tolerance.forced_hosted(request) is None
    request.tool_choice = ToolChoice("tool", "web_search")
    assert tolerance.forced_hosted(request) is search
    request.tool_choice = ToolChoice("auto", hosted="file_search")
    assert tolerance.forced_hosted(request) is files
    request.tool_choice = ToolChoice("auto", hosted="web_search_preview")
    assert tolerance.forced_hosted(request) is search, "web search under any of its names"
    request.tool_choice = ToolChoice("required")
    assert tolerance.forced_hosted(request) is None


# ---------------------------------------------------------------- system turns and namespaces


def test_a_system_turn_is_kept_in_its_place_stored_and_never_echoed() -> None:
    request = from_anthropic(
        messages=[
            {"role": "user", "content": "Hello there"},
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
        ]
    )
    assert [message.role for message in request.messages] == ["user", "system"]
    conversation = [*request.messages, Message("assistant", [TextPart("hi")])]
    assert decode_conversation(encode_conversation(conversation)) == conversation
    assert request.last_turn() == request.messages[0]
    assert request.last_user_text() == "Hello there"


async def test_echo_answers_without_what_it_cannot_take_and_reports_it() -> None:
    request = from_anthropic(
        messages=[{"role": "user", "content": "Hello there"}, {"role": "system", "content": "Be nice."}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        context_management={"edits": []},
    )
    echo = EchoProvider(EchoConfig())
    answer = await echo.complete(request)
    assert answer.text() == "Hello there"
    assert request.dropped == ["tools[0]:web_search_20250305", "context_management"]


def test_flat_names_fit_every_upstream_and_stay_the_same_for_one_pair() -> None:
    assert namespace_tools.flat_name("multi_agent_v1", "spawn_agent") == "multi_agent_v1__spawn_agent"
    assert namespace_tools.flat_name("mcp_", "_read") == "mcp__read", "as Codex joins them"
    long_one = namespace_tools.flat_name("a.very.long.namespace" * 3, "tool name with spaces")
    assert namespace_tools.NAME.match(long_one) and long_one == namespace_tools.flat_name(
        "a.very.long.namespace" * 3, "tool name with spaces"
    )
    assert long_one != namespace_tools.flat_name("a.very.long.namespace" * 3, "tool name with spaces!")


def test_a_namespaced_call_sent_back_is_its_flat_name_and_a_forced_one_too() -> None:
    body = {
        "model": "m",
        "input": [
            {"type": "function_call", "name": "spawn_agent", "namespace": "agents", "arguments": "{}", "call_id": "c"},
        ],
        "tools": [{"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn_agent"}]}],
        "tool_choice": {"type": "function", "name": "spawn_agent", "namespace": "agents"},
    }
    request = openai_responses.decode_request(body)
    (call,) = request.messages[0].content
    assert getattr(call, "name", None) == "agents__spawn_agent"
    assert [tool.name for tool in request.tools] == ["agents__spawn_agent"]
    assert request.tool_choice == ToolChoice("tool", "agents__spawn_agent")
