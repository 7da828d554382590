"""The output items of the Responses API, built from canonical parts (for answers and streams alike).

Besides messages, function calls and reasoning, Codex CLI reads three more kinds here:

- `custom_tool_call`: a call of a custom (freeform) tool such as `apply_patch`, its input
  raw text;
- `local_shell_call`: a call of the `local_shell` tool, which reaches upstreams as a
  function of that name whose arguments are the shell action (`LOCAL_SHELL_TOOL`);
- `web_search_call`: a search the upstream ran itself, with the query and the pages found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypereal.llm import continuity
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


def offers_local_shell(request: dict[str, Any]) -> bool:
    """Whether a client's Responses body offered the `local_shell` tool (its calls then go back as such)."""
    tools = request.get("tools")
    return isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") == LOCAL_SHELL for t in tools)


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


def output_items(content: list[OutputPart], *, local_shell: bool = False) -> list[dict[str, Any]]:
    """Output parts as Responses output items: consecutive text parts share one message item.

    `local_shell`: the client offered that tool, so calls of a function of its name are its calls.
    """
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
            kind = call_kind(part, local_shell)
            items.append(CALL_ITEMS[kind](new_id(ITEM_PREFIXES[kind]), part, "completed"))
        elif isinstance(part, ThinkingPart):
            items.append(reasoning_item(new_id("rs_"), part.text, client_token(part)))
        elif isinstance(part, RedactedThinkingPart):
            items.append(reasoning_item(new_id("rs_"), "", client_token(part)))
        else:
            items.append(web_search_call_item(new_id("ws_"), part))
    return items


def call_kind(part: ToolUsePart, local_shell: bool) -> str:
    """The item type of a call; `local_shell` as for `output_items`."""
    if part.custom:
        return "custom_tool_call"
    if local_shell and part.name == LOCAL_SHELL:
        return "local_shell_call"
    return "function_call"


def message_item(item_id: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, part: ToolUsePart, status: str = "completed") -> dict[str, Any]:
    return {**_call(item_id, "function_call", part, status), "name": part.name, "arguments": part.arguments}


def custom_tool_call_item(item_id: str, part: ToolUsePart, status: str = "completed") -> dict[str, Any]:
    return {**_call(item_id, "custom_tool_call", part, status), "name": part.name, "input": part.arguments}


def local_shell_call_item(item_id: str, part: ToolUsePart, status: str = "completed") -> dict[str, Any]:
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


CALL_ITEMS: dict[str, Callable[[str, ToolUsePart, str], dict[str, Any]]] = {
    "function_call": function_call_item,
    "custom_tool_call": custom_tool_call_item,
    "local_shell_call": local_shell_call_item,
}
