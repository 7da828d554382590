"""The output items of the Responses API, built from canonical parts (for answers and streams alike).

Besides messages, function calls and reasoning, Codex CLI reads three more kinds here:

- `custom_tool_call`: a call of a custom (freeform) tool such as `apply_patch`, its input
  raw text;
- `local_shell_call`: a call of the `local_shell` tool, which reaches upstreams as a
  function of that name whose arguments are the shell action (`LOCAL_SHELL_TOOL`);
- `web_search_call`: a search the upstream ran itself, with the query and the pages found.

A call of a tool the client declared in a namespace goes back under the tool's own name
with its `namespace` (`namespace_tools`); which tools those are, and whether the client
offered `local_shell`, is read once from its body (`ClientTools`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypereal.llm import continuity, namespace_tools
from hypereal.llm.types import (
    Citation,
    OutputPart,
    RedactedThinkingPart,
    TextPart,
    ThinkingPart,
    Tool,
    ToolUsePart,
    WebSearchPart,
    new_id,
)

LOCAL_SHELL = "local_shell"
LOCAL_SHELL_TOOL = Tool(
    LOCAL_SHELL,
    "Runs a command on the user's machine and returns its output.",
    {
        "type": "object",
        "properties": {
            "command": {
                "type": "array",
                "items": {"type": "string"},
                "description": 'The program and its arguments, e.g. ["bash", "-lc", "ls -la"].',
            },
            "working_directory": {"type": "string"},
            "timeout_ms": {"type": "integer"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "user": {"type": "string"},
        },
        "required": ["command"],
    },
)


ITEM_PREFIXES = {
    "message": "msg_",
    "function_call": "fc_",
    "custom_tool_call": "ctc_",
    "local_shell_call": "lsh_",
    "reasoning": "rs_",
    "web_search_call": "ws_",
}


@dataclass(frozen=True, slots=True)
class ClientTools:
    """How a Responses client's calls go back to it, from the tools its body offered."""

    local_shell: bool = False
    """It offered `local_shell`: calls of a function of that name are that tool's calls."""
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    """flat name → (namespace, name) of its tools in namespaces."""

    @classmethod
    def of(cls, request: dict[str, Any]) -> ClientTools:
        tools = request.get("tools")
        if not isinstance(tools, list) or not tools:
            return NO_TOOLS
        local_shell = any(isinstance(tool, dict) and tool.get("type") == LOCAL_SHELL for tool in tools)
        return cls(local_shell, namespace_tools.declared(request))

    def name(self, part: ToolUsePart) -> dict[str, str]:
        """The `name` (and `namespace`) of a call item."""
        found = self.namespaced.get(part.name)
        return {"name": part.name} if found is None else {"name": found[1], "namespace": found[0]}


NO_TOOLS = ClientTools()


def output_text(part: TextPart) -> dict[str, Any]:
    """A text part as `output_text`; each citation spans the whole text it came with."""
    annotations = [url_citation(citation, 0, len(part.text)) for citation in part.citations]
    return {"type": "output_text", "text": part.text, "annotations": annotations, "logprobs": []}


def url_citation(citation: Citation, start: int, end: int) -> dict[str, Any]:
    return {
        "type": "url_citation",
        "start_index": start,
        "end_index": end,
        "title": citation.title,
        "url": citation.url,
    }


def output_items(content: list[OutputPart], tools: ClientTools = NO_TOOLS) -> list[dict[str, Any]]:
    """Output parts as Responses output items: consecutive text parts share one message item."""
    items: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if not part.text:
                continue
            if items and items[-1]["type"] == "message":
                items[-1]["content"].append(output_text(part))
            else:
                items.append(message_item(new_id("msg_"), [output_text(part)]))
        elif isinstance(part, ToolUsePart):
            kind = call_kind(part, tools)
            items.append(CALL_ITEMS[kind](new_id(ITEM_PREFIXES[kind]), part, "completed", tools))
        elif isinstance(part, ThinkingPart):
            items.append(reasoning_item(new_id("rs_"), part.text, client_token(part)))
        elif isinstance(part, RedactedThinkingPart):
            items.append(reasoning_item(new_id("rs_"), "", client_token(part)))
        else:
            items.append(web_search_call_item(new_id("ws_"), part))
    return items


def call_kind(part: ToolUsePart, tools: ClientTools) -> str:
    """The item type of a call."""
    if part.custom:
        return "custom_tool_call"
    if tools.local_shell and part.name == LOCAL_SHELL:
        return "local_shell_call"
    return "function_call"


def message_item(item_id: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(
    item_id: str, part: ToolUsePart, status: str = "completed", tools: ClientTools = NO_TOOLS
) -> dict[str, Any]:
    return {**_call(item_id, "function_call", part, status), **tools.name(part), "arguments": part.arguments}


def custom_tool_call_item(
    item_id: str, part: ToolUsePart, status: str = "completed", tools: ClientTools = NO_TOOLS
) -> dict[str, Any]:
    return {**_call(item_id, "custom_tool_call", part, status), **tools.name(part), "input": part.arguments}


def local_shell_call_item(
    item_id: str, part: ToolUsePart, status: str = "completed", tools: ClientTools = NO_TOOLS
) -> dict[str, Any]:
    action = {"type": "exec", **{key: value for key, value in part.input().items() if key != "type"}}
    return {**_call(item_id, "local_shell_call", part, status), "action": action}


def _call(item_id: str, kind: str, part: ToolUsePart, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": kind, "status": status, "call_id": part.id}


def web_search_call_item(item_id: str, part: WebSearchPart, status: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "search", "query": part.query}
    if part.sources:
        action["sources"] = [{"type": "url", "url": source.url} for source in part.sources]
    status = status or ("failed" if part.failed else "completed")
    return {"id": item_id, "type": "web_search_call", "status": status, "action": action}


def client_token(part: ThinkingPart | RedactedThinkingPart) -> str:
    """A reasoning item's `encrypted_content` for a client: OpenAI's as is, Anthropic's
    signature or redacted thinking tagged (`continuity`)."""
    if isinstance(part, RedactedThinkingPart):
        return continuity.tag(continuity.REDACTED + part.data, "anthropic")
    return continuity.for_client(part.signature, part.origin, "openai")


def reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    return item


CALL_ITEMS: dict[str, Callable[[str, ToolUsePart, str, ClientTools], dict[str, Any]]] = {
    "function_call": function_call_item,
    "custom_tool_call": custom_tool_call_item,
    "local_shell_call": local_shell_call_item,
}
