"""Chat Completions tools: function and custom tools, tool choices and tool calls, both ways.

A tool of any type other than `function` and `custom` is one OpenAI defines (a hosted tool),
kept as the client sent it for the upstream codec to map or drop (`hosted_tools`). Custom
(freeform) tools go to servers that know them as they are, and to the others wrapped as a
function of one string (`custom_tools`).
"""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.llm import custom_tools, fields, tolerance
from hypereal.llm.types import HostedTool, Tool, ToolChoice, ToolUsePart


def decode_tool(raw: Any, where: str) -> Tool | HostedTool:
    """A function or custom tool; a tool of any other type is one OpenAI defines, which only an
    upstream that takes the body as is may know."""
    tool = fields.mapping(raw, where)
    kind = tool.get("type", "function")
    if kind == "custom":
        return decode_custom(tool.get("custom"), f"{where}.custom")
    if kind != "function":
        return HostedTool(tool, where)
    return decode_function(tool.get("function"), f"{where}.function")


def decode_custom(raw: Any, where: str) -> Tool:
    custom = fields.mapping(raw, where)
    name = fields.string(custom, "name", required=True)
    assert name is not None
    description = custom.get("description")
    fmt = custom.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        grammar = fields.mapping(fmt.get("grammar"), f"{where}.format.grammar")
        fmt = {"type": "grammar", "syntax": grammar.get("syntax"), "definition": grammar.get("definition")}
    return Tool(
        name,
        description if isinstance(description, str) else None,
        kind="custom",
        format=fmt if isinstance(fmt, dict) else None,
    )


def decode_function(raw: Any, where: str) -> Tool:
    function = fields.mapping(raw, where)
    name = fields.string(function, "name", required=True)
    assert name is not None
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    description = function.get("description")
    return Tool(name, description if isinstance(description, str) else None, fields.mapping(parameters, where))


def decode_tool_choice(value: Any, dropped: list[str]) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict):
        named = value.get("custom") if value.get("type") == "custom" else value.get("function")
        name = (named if isinstance(named, dict) else value).get("name")
        if isinstance(name, str):
            return ToolChoice("tool", name)
    tolerance.drop(dropped, "tool_choice", str(value.get("type") if isinstance(value, dict) else value))
    return None


def encode_tool(tool: Tool, native_custom: bool) -> dict[str, Any]:
    if tool.kind == "custom" and native_custom:
        custom: dict[str, Any] = {"name": tool.name}
        if tool.description:
            custom["description"] = tool.description
        if tool.format:
            custom["format"] = encode_custom_format(tool.format)
        return {"type": "custom", "custom": custom}
    if tool.kind == "custom":
        description: str | None = custom_tools.wrapper_description(tool)
        parameters = custom_tools.INPUT_SCHEMA
    else:
        description, parameters = tool.description, tool.parameters
    function = {"name": tool.name, **({"description": description} if description else {}), "parameters": parameters}
    return {"type": "function", "function": function}


def encode_custom_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """The Responses API's flat grammar format in Chat Completions' nested shape."""
    if fmt.get("type") != "grammar":
        return fmt
    return {"type": "grammar", "grammar": {"syntax": fmt.get("syntax"), "definition": fmt.get("definition")}}


def encode_tool_choice(choice: ToolChoice, *, custom: bool = False) -> Any:
    if choice.mode == "tool" and custom:
        return {"type": "custom", "custom": {"name": choice.name}}
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def encode_tool_call(part: ToolUsePart, native_custom: bool = True) -> dict[str, Any]:
    if part.custom and native_custom:
        return {"id": part.id, "type": "custom", "custom": {"name": part.name, "input": part.arguments}}
    arguments = orjson.dumps(part.input()).decode() if part.custom else part.arguments or "{}"
    return {"id": part.id, "type": "function", "function": {"name": part.name, "arguments": arguments}}
