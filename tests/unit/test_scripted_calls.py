"""Scripted tool calls: `call <tool> with <JSON object>` in a prompt makes local-echo (and the
upstream doubles, tested against the providers in tests/integration/test_chat_providers.py)
call exactly that tool with exactly those arguments."""

from __future__ import annotations

from hypereal.catalog.providers import EchoConfig
from hypereal.llm.types import (
    Accumulator,
    ChatRequest,
    Message,
    TextPart,
    Tool,
    ToolChoice,
    ToolInputDelta,
    ToolResultPart,
    ToolUsePart,
)
from hypereal.providers.echo import EchoProvider, scripted_call

BASH = Tool("Bash", "Run a command", {"type": "object", "properties": {"command": {"type": "string"}}})
READ = Tool("Read", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}})
PATCH = Tool("apply_patch", "Edit files", kind="custom")
SCRIPT = 'call Bash with {"command": "echo hypereal-$((6*7))", "description": "print"}'


def request(text: str, tools: list[Tool], **extra: object) -> ChatRequest:
    return ChatRequest(model="local-echo", messages=[Message("user", [TextPart(text)])], tools=tools, **extra)  # type: ignore[arg-type]


async def answer(chat: ChatRequest) -> Accumulator:
    accumulator = Accumulator()
    async for event in EchoProvider(EchoConfig()).stream(chat):
        accumulator.add(event)
    return accumulator


def test_a_script_names_the_tool_and_holds_its_arguments() -> None:
    assert scripted_call(SCRIPT, ["Read", "Bash"]) == (
        "Bash",
        {"command": "echo hypereal-$((6*7))", "description": "print"},
    )
    nested = 'Please call `exec_command` with {"cmd": "ls", "env": {"A": "}"}} and then stop.'
    assert scripted_call(nested, ["exec_command"]) == ("exec_command", {"cmd": "ls", "env": {"A": "}"}})


def test_a_script_for_a_tool_not_offered_or_with_broken_json_is_no_script() -> None:
    assert scripted_call(SCRIPT, ["Read"]) is None
    assert scripted_call('call Bash with {"command": ', ["Bash"]) is None
    assert scripted_call("call Bash with [1, 2]", ["Bash"]) is None
    assert scripted_call("just call Bash please", ["Bash"]) is None
    # The first directive that names an offered tool and holds an object wins.
    text = 'call Write with {"a": 1} then call Bash with {"command": "x"} or call Bash with {"command": "y"}'
    assert scripted_call(text, ["Bash"]) == ("Bash", {"command": "x"})


async def test_echo_calls_exactly_the_scripted_tool_with_exactly_its_arguments() -> None:
    answered = await answer(request(SCRIPT, [READ, BASH]))

    call = answered.response().content[0]
    assert isinstance(call, ToolUsePart) and call.name == "Bash"
    assert call.input() == {"command": "echo hypereal-$((6*7))", "description": "print"}
    assert answered.stop_reason == "tool_use"


async def test_echo_streams_a_scripted_call_in_pieces_that_join_to_the_arguments() -> None:
    events = [event async for event in EchoProvider(EchoConfig()).stream(request(SCRIPT, [BASH]))]

    pieces = [event.partial_json for event in events if isinstance(event, ToolInputDelta)]
    assert len(pieces) > 1
    assert "".join(pieces) == '{"command":"echo hypereal-$((6*7))","description":"print"}'


async def test_echo_gives_a_custom_tool_the_scripted_json_as_its_raw_input() -> None:
    answered = await answer(request('call apply_patch with {"patch": "*** Begin Patch"}', [BASH, PATCH]))

    call = answered.response().content[0]
    assert isinstance(call, ToolUsePart) and call.name == "apply_patch" and call.custom
    assert call.arguments == '{"patch":"*** Begin Patch"}'


async def test_a_tool_choice_forcing_another_tool_or_none_outweighs_the_script() -> None:
    forced = await answer(request(SCRIPT, [READ, BASH], tool_choice=ToolChoice("tool", "Read")))
    call = forced.response().content[0]
    assert isinstance(call, ToolUsePart) and call.name == "Read"

    refused = await answer(request(SCRIPT, [READ, BASH], tool_choice=ToolChoice("none")))
    assert refused.stop_reason == "end_turn" and refused.response().text() == SCRIPT


async def test_after_the_tool_answers_echo_reports_its_output_instead_of_calling_again() -> None:
    answered = await answer_after_the_tool()

    assert answered.stop_reason == "end_turn" and answered.response().text() == "The tool returned: hypereal-42"


async def test_instructions_placed_after_the_tool_result_do_not_make_echo_call_again() -> None:
    answered = await answer_after_the_tool(Message("system", [TextPart("Mind the attribution rules.")]))  # type: ignore[arg-type]

    assert answered.stop_reason == "end_turn" and answered.response().text() == "The tool returned: hypereal-42"


async def answer_after_the_tool(*after: Message) -> Accumulator:
    """Echo's answer once the scripted call was made and the tool printed `hypereal-42`."""
    call = (await answer(request(SCRIPT, [BASH]))).response().content[0]
    assert isinstance(call, ToolUsePart)
    follow_up = request(SCRIPT, [BASH])
    result = Message("user", [ToolResultPart(call.id, [TextPart("hypereal-42")])])
    follow_up.messages += [Message("assistant", [call]), result, *after]
    return await answer(follow_up)
