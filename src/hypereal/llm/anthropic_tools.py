"""The tools of a Messages request: the client's own, and those Anthropic defines.

    no type, or "custom"        a function with its `input_schema`
    bash_…, text_editor_…       Anthropic-defined client tools (Claude Code's, among others),
                                which the client runs: a function with the input schema
                                Anthropic publishes for it, keeping the declaration for an
                                Anthropic upstream (`Tool.anthropic`)
    any other type              a `HostedTool` of Anthropic's: server tools (web search, web
                                fetch, code execution, …) and client tools whose input only
                                Claude knows how to fill (computer use, memory, …); web search
                                runs elsewhere too, the others only at Anthropic

Calls of a bash or text editor function come back under the tool's own name, which is what
the client dispatches on, so they need no unwrapping.

A function's keys other than its name, description and schema (`cache_control`, Claude
Code's `defer_loading`, …) have no counterpart elsewhere and are dropped, each reported once
(`tolerance`); the tools Anthropic defines keep theirs for an Anthropic upstream.
"""

from __future__ import annotations

from typing import Any

from hypereal.llm import fields, tolerance
from hypereal.llm.types import HostedTool, Tool

BASH_DESCRIPTION = (
    "Runs a command in a persistent bash session and returns its output. The session keeps its "
    "state between calls; set `restart` to true to start a fresh one."
)
BASH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The bash command to run."},
        "restart": {"type": "boolean", "description": "Restart the bash session instead of running a command."},
    },
}
TEXT_EDITOR_DESCRIPTION = (
    "Views, creates and edits text files. `view` shows a file with line numbers (or lists a "
    "directory), optionally only the lines in `view_range`; `create` writes `file_text` to a new "
    "file; `str_replace` replaces the one exact occurrence of `old_str` with `new_str`; `insert` "
    "adds `new_str` after line `insert_line` (0 for the top of the file)."
)
UNDO_DESCRIPTION = " `undo_edit` reverts the last edit of the file."
UNDO_VERSIONS = frozenset({"text_editor_20241022", "text_editor_20250124"})
"""The text editor versions that still have `undo_edit`."""
DEFAULT_NAMES = {"bash": "bash", "text_editor": "str_replace_based_edit_tool"}
FUNCTION_KEYS = frozenset({"type", "name", "description", "input_schema"})


def text_editor_schema(undo: bool) -> dict[str, Any]:
    commands = ["view", "create", "str_replace", "insert", *(["undo_edit"] if undo else [])]
    return {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": commands, "description": "The command to run."},
            "path": {"type": "string", "description": "Absolute path of the file or directory."},
            "file_text": {"type": "string", "description": "The content of the new file, for `create`."},
            "old_str": {"type": "string", "description": "The exact text to replace, for `str_replace`."},
            "new_str": {"type": "string", "description": "The new text, for `str_replace` and `insert`."},
            "insert_line": {"type": "integer", "description": "The line to insert after, for `insert`."},
            "view_range": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "First and last line to show, for `view` (-1 for the end of the file).",
            },
        },
        "required": ["command", "path"],
    }


def decode_tools(raw_tools: list[Any], dropped: list[str]) -> tuple[list[Tool], list[HostedTool]]:
    """The request's `tools` as functions and vendor-defined tools; what they leave out goes to `dropped`."""
    tools: list[Tool] = []
    hosted: list[HostedTool] = []
    for index, raw in enumerate(raw_tools):
        where = f"tools.{index}"
        tool = fields.mapping(raw, where)
        kind = tool.get("type")
        if kind in (None, "custom"):
            tools.append(_function(tool, where))
            tolerance.unknown_keys(tool, FUNCTION_KEYS, where, dropped)
        elif not isinstance(kind, str) or not kind:
            raise fields.invalid(f"{where}.type", "a tool type")
        elif (defined := _defined_tool(kind, tool)) is not None:
            tools.append(defined)
        else:
            hosted.append(HostedTool(tool, where, vendor="anthropic"))
    return tools, hosted


def _function(tool: dict[str, Any], where: str) -> Tool:
    name = fields.string(tool, "name", required=True)
    assert name is not None
    schema = tool.get("input_schema") or {"type": "object", "properties": {}}
    description = tool.get("description") if isinstance(tool.get("description"), str) else None
    return Tool(name, description, fields.mapping(schema, f"{where}.input_schema"))


def _defined_tool(kind: str, tool: dict[str, Any]) -> Tool | None:
    """Bash or the text editor as a function with its published schema; None for other types."""
    family = kind.rsplit("_", 1)[0]
    if family not in DEFAULT_NAMES:
        return None
    given = tool.get("name")
    name = given if isinstance(given, str) and given else DEFAULT_NAMES[family]
    if family == "bash":
        return Tool(name, BASH_DESCRIPTION, BASH_SCHEMA, anthropic=tool)
    undo = kind in UNDO_VERSIONS
    description = TEXT_EDITOR_DESCRIPTION + (UNDO_DESCRIPTION if undo else "")
    return Tool(name, description, text_editor_schema(undo), anthropic=tool)
