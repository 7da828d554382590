"""Tools a vendor defines, across upstreams of other vendors.

OpenAI's hosted tools (web search, file search, code interpreter, computer use, image
generation, MCP) reach us in the Responses API's shape, and a Chat Completions client's
`web_search_options` as OpenAI's web search tool; Anthropic's server tools (web search, web
fetch, code execution, …) and the client tools only Claude knows come in the Messages API's
shape. An upstream of the tool's own vendor runs it as it came. Across vendors only web
search has counterparts:

    Anthropic          `web_search_20250305` (or a later version): `server_tool_use` and
                       `web_search_tool_result` blocks, citations on the text
    OpenAI Responses   the `web_search` tool: a `web_search_call` item, `url_citation`
                       annotations on the text
    Chat Completions   `web_search_options`, which only OpenAI's search models take (they
                       search on every call): `url_citation` annotations, no record of a search

A search becomes a `WebSearchPart`, its citations the text's. A setting one side cannot
honour (Anthropic's `blocked_domains`, domain filters behind Chat Completions, Codex's
`external_web_access: false`, which keeps a search off the live web) makes the tool one that
side cannot run, rather than a wider search; a cap on how many searches the model may make
(`max_uses`) has no counterpart and is let go.

The converters here raise `cannot_run` for a tool they cannot map. The upstream codecs drop
such a tool and report it (`tolerance.hosted`); the gateway prefers the routes that run them
all (`refusal`), and answers with the 400 only when the client forces the tool with its
`tool_choice` and no route runs it (`tolerance.forced_hosted`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from hypereal.errors import ValidationFailed
from hypereal.llm import fields
from hypereal.llm.continuity import FOREIGN_SEARCH
from hypereal.llm.types import Citation, HostedTool, WebSearchPart

ANTHROPIC_WEB_SEARCH = "web_search_20250305"
WEB_SEARCH_NAME = "web_search"
LOCATION_KEYS = ("city", "region", "country", "timezone")


def is_web_search(tool: HostedTool) -> bool:
    """Web search under any of its names: OpenAI's `web_search`, `web_search_preview`, dated
    ones, and Anthropic's dated `web_search_…` server tools."""
    return tool.type.startswith("web_search")


def cannot_run(tool: HostedTool, upstream: str, setting: str | None = None) -> ValidationFailed:
    what = f"Tool type '{tool.type}'" + (f" with '{setting}'" if setting else "")
    return ValidationFailed(
        f"{what} cannot run at this model's upstream ({upstream}); leave it out or pick a model whose upstream runs it",
        field=tool.field,
    )


def refusal(tools: Iterable[HostedTool], convert: Callable[[HostedTool], object]) -> ValidationFailed | None:
    """The error `convert` raises for the first tool it cannot map, None when it maps them all:
    why a route cannot run them all."""
    for tool in tools:
        try:
            convert(tool)
        except ValidationFailed as exc:
            return exc
    return None


# ---------------------------------------------------------------- requests


def for_anthropic(tool: HostedTool, upstream: str) -> dict[str, Any]:
    """The tool as the Messages API takes it."""
    if tool.vendor == "anthropic":
        return tool.spec
    _search_anywhere(tool, upstream)
    server_tool: dict[str, Any] = {"type": ANTHROPIC_WEB_SEARCH, "name": WEB_SEARCH_NAME}
    filters = tool.spec.get("filters")
    allowed = filters.get("allowed_domains") if isinstance(filters, dict) else None
    if isinstance(allowed, list) and allowed:
        server_tool["allowed_domains"] = allowed
    location = _location(tool.spec.get("user_location"))
    if location:
        server_tool["user_location"] = {"type": "approximate", **location}
    return server_tool


def for_responses(tool: HostedTool, upstream: str) -> dict[str, Any]:
    """The tool as the Responses API takes it; OpenAI's own are sent as they came."""
    if not is_web_search(tool):
        raise cannot_run(tool, upstream)
    if tool.vendor == "openai":
        return tool.spec
    if tool.spec.get("blocked_domains"):
        raise cannot_run(tool, upstream, "blocked_domains")
    search: dict[str, Any] = {"type": "web_search"}
    allowed = tool.spec.get("allowed_domains")
    if isinstance(allowed, list) and allowed:
        search["filters"] = {"allowed_domains": allowed}
    location = _location(tool.spec.get("user_location"))
    if location:
        search["user_location"] = {"type": "approximate", **location}
    return search


def for_chat(tool: HostedTool, upstream: str, *, searches: bool) -> dict[str, Any]:
    """The tool's part of a Chat Completions body's `web_search_options`; `searches`: the model
    is a search model."""
    if not searches:
        raise cannot_run(tool, upstream)
    _search_anywhere(tool, upstream)
    spec = tool.spec
    for setting in ("filters", "allowed_domains", "blocked_domains"):
        if spec.get(setting):
            raise cannot_run(tool, upstream, setting)
    options: dict[str, Any] = {}
    location = _location(spec.get("user_location"))
    if location:
        options["user_location"] = {"type": "approximate", "approximate": location}
    if isinstance(spec.get("search_context_size"), str):
        options["search_context_size"] = spec["search_context_size"]
    return options


def _search_anywhere(tool: HostedTool, upstream: str) -> None:
    """Raise unless `tool` is a web search another vendor's search can stand for."""
    if not is_web_search(tool):
        raise cannot_run(tool, upstream)
    if tool.spec.get("external_web_access") is False:
        raise cannot_run(tool, upstream, "external_web_access")


def from_chat_web_search_options(value: Any) -> HostedTool:
    """A Chat Completions client's `web_search_options` as OpenAI's web search tool."""
    options = fields.mapping(value, "web_search_options")
    spec: dict[str, Any] = {"type": WEB_SEARCH_NAME}
    location = options.get("user_location")
    if isinstance(location, dict):
        found = _location(location.get("approximate"))
        if found:
            spec["user_location"] = {"type": "approximate", **found}
    if isinstance(options.get("search_context_size"), str):
        spec["search_context_size"] = options["search_context_size"]
    return HostedTool(spec, "web_search_options")


def _location(raw: Any) -> dict[str, str]:
    """City, region, country and timezone of an approximate location (the same keys everywhere)."""
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in LOCATION_KEYS if isinstance(raw.get(key), str)}


# ---------------------------------------------------------------- answers


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


def anthropic_search_blocks(search: WebSearchPart) -> tuple[dict[str, Any], dict[str, Any]]:
    """A search as Anthropic's `server_tool_use` and `web_search_tool_result` blocks.

    Pages found elsewhere come without Anthropic's `encrypted_content`: theirs is our tag, by
    which a forwarded request leaves them out again (`continuity.anthropic_own`), as a
    translated one leaves out every search (`anthropic.decode_blocks`).
    """
    call_id = search.id if search.id.startswith("srvtoolu_") else "srvtoolu_" + search.id
    call = {"type": "server_tool_use", "id": call_id, "name": WEB_SEARCH_NAME, "input": {"query": search.query}}
    content: Any
    if search.failed:
        content = {"type": "web_search_tool_result_error", "error_code": "unavailable"}
    else:
        content = [_search_result(page) for page in search.sources]
    return call, {"type": "web_search_tool_result", "tool_use_id": call_id, "content": content}


def _search_result(page: Citation) -> dict[str, Any]:
    result = {"type": "web_search_result", "url": page.url, "title": page.title, "encrypted_content": FOREIGN_SEARCH}
    return {**result, "page_age": None}


def anthropic_citation_block(citation: Citation) -> dict[str, Any]:
    """A citation as Anthropic's web_search_result_location, our tag in place of its encrypted index."""
    return {
        "type": "web_search_result_location",
        "url": citation.url,
        "title": citation.title,
        "cited_text": citation.cited_text,
        "encrypted_index": FOREIGN_SEARCH,
    }
