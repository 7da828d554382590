"""Tools the upstream runs itself, across upstreams that run different ones.

OpenAI's hosted tools (web search, file search, code interpreter, computer use, image
generation, MCP) reach us in the Responses API's shape. An OpenAI upstream that is
forwarded the client's body runs them as they are. On a translated route only web search
has a counterpart: Anthropic's server tool `web_search_20250305`, whose
`server_tool_use` + `web_search_tool_result` blocks come back as a `WebSearchPart` and
whose citations become the text's. Any other hosted tool there is refused with a 400 that
names it, rather than dropped, so the model never answers as if it had used the tool.
"""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.errors import ValidationFailed
from hypereal.llm.types import Citation, HostedTool, WebSearchPart

ANTHROPIC_WEB_SEARCH = "web_search_20250305"
WEB_SEARCH_NAME = "web_search"


def is_web_search(tool: HostedTool) -> bool:
    """OpenAI's web search under any of its names (`web_search`, `web_search_preview`, dated ones)."""
    return tool.type.startswith("web_search")


def cannot_run(tool: HostedTool, upstream: str) -> ValidationFailed:
    return ValidationFailed(
        f"Tool type '{tool.type}' cannot run at this model's upstream ({upstream}); "
        "leave it out or pick a model whose upstream runs it",
        field=tool.field,
    )


def anthropic_web_search(tool: HostedTool) -> dict[str, Any]:
    """OpenAI's web search tool as Anthropic's server tool, with the settings both have."""
    server_tool: dict[str, Any] = {"type": ANTHROPIC_WEB_SEARCH, "name": WEB_SEARCH_NAME}
    filters = tool.spec.get("filters")
    allowed = filters.get("allowed_domains") if isinstance(filters, dict) else None
    if isinstance(allowed, list) and allowed:
        server_tool["allowed_domains"] = allowed
    location = tool.spec.get("user_location")
    if isinstance(location, dict):
        keys = ("city", "region", "country", "timezone")
        found = {key: location[key] for key in keys if isinstance(location.get(key), str)}
        if found:
            server_tool["user_location"] = {"type": "approximate", **found}
    return server_tool


def web_search_call(call_id: str, arguments: str | dict[str, Any]) -> WebSearchPart:
    """Anthropic's server_tool_use of web search, its input whole (a dict) or as streamed JSON text."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            arguments = {}
    query = arguments.get("query") if isinstance(arguments, dict) else None
    return WebSearchPart(call_id, query if isinstance(query, str) else "")


def add_results(search: WebSearchPart, result: dict[str, Any]) -> None:
    """The pages of a web_search_tool_result block; an error in their place marks the search failed."""
    content = result.get("content")
    if not isinstance(content, list):
        search.failed = True  # web_search_tool_result_error: too many searches, unavailable, …
        return
    search.sources = [
        Citation(str(found["url"]), str(found.get("title") or ""))
        for found in content
        if isinstance(found, dict) and isinstance(found.get("url"), str)
    ]


def anthropic_citation(raw: Any) -> Citation | None:
    """A web_search_result_location citation; other kinds (document locations) have no URL to give."""
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        return None
    return Citation(raw["url"], str(raw.get("title") or ""), str(raw.get("cited_text") or ""))
