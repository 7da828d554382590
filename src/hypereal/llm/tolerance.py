"""What the gateway does with what it does not understand: one rule for every codec.

Clients and vendors change every week; a turn must not fail because a client sent a field,
a role, a content block, an input item or a tool type this code has never seen.

    same format on both sides   the client's body is forwarded as it came (`ChatGateway`):
                                whatever it holds reaches the upstream untouched, and nothing
                                here runs
    translating                 what has a counterpart is mapped; what has none is dropped,
                                and each drop is reported; settings without a canonical field
                                travel as the client sent them (`ChatRequest.extras`) to an
                                upstream of the client's own format, and to one of the other
                                OpenAI format when both define them alike (`carry`)
    refused (400)               only what cannot be honoured: a `tool_choice` that forces a
                                tool no route runs (`forced_hosted`), and input the model must
                                see but cannot be given (audio, a PDF: `cannot_take`)

A vendor's hosted tool (web search, file search, code execution, …) goes to the routes that
run every one of the request's; when none does, each route drops those it cannot run. A tool
whose settings a route cannot honour is dropped whole rather than run with them let go,
since that would widen it: a search restricted to some domains, or kept off the live web
(Codex's `external_web_access: false`), runs nowhere that would search more.

Reporting: a surface decoder appends to `ChatRequest.dropped` what it leaves out of the
client's body (`drop`), an upstream encoder what its upstream cannot take of the canonical
request. An entry is a path in the client's body, `tools[11]`, `input[3]` or
`context_management`, then `:` and the kind of thing dropped when the path names an item:
`tools[11]:web_search`, `messages[2]:wizard`. The same drop at several indices folds into one
entry with `*` where they differ (`messages[*].content[0]:server_tool_use`), and
`cache_control` is one entry wherever it was (`summary`). The answer carries the entries in
the `x-hypereal-dropped` header (`header`), and an INFO line of this module's logger names
the model, the route and the entries (`report`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from hypereal.errors import ValidationFailed
from hypereal.llm.types import ChatRequest, HostedTool, Wire

log = logging.getLogger(__name__)
_T = TypeVar("_T")

HEADER = "x-hypereal-dropped"
MAX_HEADER_CHARS = 2000
"""Proxies commonly refuse a header past 4 or 8 KB; the rest of a long list is counted."""
MAX_ENTRY_CHARS = 120
NO_HEADER: Mapping[str, str] = MappingProxyType({})
CACHE_CONTROL = "cache_control"

OPENAI_ALIKE = {
    "prompt_cache_key": "prompt_cache_key",
    "prompt_cache_retention": "prompt_cache_retention",
    "safety_identifier": "safety_identifier",
    "service_tier": "service_tier",
    "metadata": "metadata",
    "store": "store",
    "top_logprobs": "top_logprobs",
    "text.verbosity": "verbosity",
}
"""Settings the Responses API (keys) and Chat Completions (values) both define, with the same
values and meaning (https://platform.openai.com/docs/api-reference/responses/create and
/chat/create)."""
_ALIKE_FROM_CHAT = {chat: responses for responses, chat in OPENAI_ALIKE.items()}

_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
_BRACKETS = re.compile(r"\[(\d+)\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-\[\]*/]")


# ---------------------------------------------------------------- recording drops


def drop(dropped: list[str], where: str, what: str | None = None) -> None:
    """Record that the client's `where` (`tools.3`, dotted as in error fields) was left out;
    `what` names the kind of item (its type or role)."""
    entry = _INDEX.sub(r"[\1]", where) + (f":{what}" if what else "")
    dropped.append(_UNSAFE.sub("?", entry)[:MAX_ENTRY_CHARS])


def unknown_keys(value: dict[str, Any], known: frozenset[str], where: str, dropped: list[str]) -> None:
    """Drop the keys of `value` outside `known` (`cache_control` once, wherever it is)."""
    for key in value:
        if key == CACHE_CONTROL:
            dropped.append(CACHE_CONTROL)
        elif key not in known:
            drop(dropped, f"{where}.{key}")


def extras(body: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The top-level settings of a client's body that its decoder does not read."""
    return {key: value for key, value in body.items() if key not in known}


def cannot_take(kind: str, where: str) -> ValidationFailed:
    """The 400 for input the model must see and that no translation can carry (audio, files)."""
    return ValidationFailed(
        f"Content of type {kind!r} cannot be sent to this model's upstream; "
        "leave it out or pick a model whose upstream speaks this API",
        field=where,
    )


# ---------------------------------------------------------------- upstream encoders


def carry(body: dict[str, Any], request: ChatRequest, upstream: Wire | None) -> dict[str, Any]:
    """`body` with the request's extras an upstream of format `upstream` takes; the others are dropped.

    An upstream of the client's own format takes them all; Chat Completions and the Responses
    API take each other's `OPENAI_ALIKE`; None is an upstream that takes none (a local model).
    The encoder's own keys win: an object is merged key by key, a list gains the items it lacks.
    """
    for key, value in request.extras.items():
        target = _target(key, request.surface, upstream)
        if target is None:
            drop(request.dropped, key)
        else:
            _merge(body, target.split("."), value)
    return body


def _target(key: str, surface: Wire | None, upstream: Wire | None) -> str | None:
    if upstream is None or surface is None:
        return None
    if upstream == surface:
        return key
    if (surface, upstream) == ("openai-responses", "openai-chat"):
        return OPENAI_ALIKE.get(key)
    if (surface, upstream) == ("openai-chat", "openai-responses"):
        return _ALIKE_FROM_CHAT.get(key)
    return None


def _merge(body: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = body.get(part)
        if not isinstance(inner, dict):
            if inner is not None:
                return  # the encoder wrote something else there: it wins
            inner = body[part] = {}
        body = inner
    key = path[-1]
    current = body.get(key)
    if current is None:
        body[key] = value
    elif isinstance(current, dict) and isinstance(value, dict):
        body[key] = {**value, **current}
    elif isinstance(current, list) and isinstance(value, list):
        body[key] = current + [item for item in value if item not in current]


def hosted(request: ChatRequest, convert: Callable[[HostedTool], _T]) -> list[_T]:
    """The request's hosted tools as `convert` maps them; those it refuses (`cannot_run`) are dropped."""
    kept: list[_T] = []
    for tool in request.hosted_tools:
        try:
            kept.append(convert(tool))
        except ValidationFailed:
            drop(request.dropped, tool.field, tool.type)
    return kept


def takes_nothing(request: ChatRequest) -> None:
    """For an upstream that runs no hosted tool and takes no extra setting (a local model)."""
    hosted(request, _runs_none)
    carry({}, request, None)


def _runs_none(tool: HostedTool) -> None:
    raise ValidationFailed(tool.type)


def forced_hosted(request: ChatRequest) -> HostedTool | None:
    """The hosted tool the request's `tool_choice` forces, if it forces one."""
    choice = request.tool_choice
    if choice is None or not request.hosted_tools:
        return None
    for tool in request.hosted_tools:
        if choice.hosted is not None and _same_kind(choice.hosted, tool.type):
            return tool
        named = tool.spec.get("name")
        forced = choice.mode == "tool" and named is not None and named == choice.name
        if forced and not any(function.name == choice.name for function in request.tools):
            return tool
    return None


def _same_kind(chosen: str, offered: str) -> bool:
    return chosen == offered or (chosen.startswith("web_search") and offered.startswith("web_search"))


# ---------------------------------------------------------------- the answer


def summary(dropped: Iterable[str]) -> list[str]:
    """The entries, each once, the same drop at several indices folded into one."""
    shapes: dict[str, list[list[str]]] = {}
    for entry in dropped:
        indices = _BRACKETS.findall(entry)
        found = shapes.setdefault(_BRACKETS.sub("[]", entry), [])
        if indices not in found:
            found.append(indices)
    entries: list[str] = []
    for shape, seen in shapes.items():
        folded = ["*" if len({indices[n] for indices in seen}) > 1 else seen[0][n] for n in range(len(seen[0]))]
        pieces = shape.split("[]")
        entries.append("".join(piece + (f"[{folded[n]}]" if n < len(folded) else "") for n, piece in enumerate(pieces)))
    return entries


def report(dropped: Sequence[str], model: str, route: str) -> list[str]:
    """The entries of a translated call's drops, logged once with the model and the route
    (provider and upstream model) that answered; [] when nothing was dropped."""
    if not dropped:
        return []
    entries = summary(dropped)
    log.info("chat %s via %s dropped %s", model, route, ",".join(entries))
    return entries


def header(entries: Sequence[str]) -> Mapping[str, str]:
    """The answer's header naming the entries; those past `MAX_HEADER_CHARS` are counted."""
    if not entries:
        return NO_HEADER
    value = ""
    for position, entry in enumerate(entries):
        rest = len(entries) - position
        if len(value) + len(entry) + 1 > MAX_HEADER_CHARS - len(f",+{rest} more"):
            value += f",+{rest} more"
            break
        value += ("," if value else "") + entry
    return {HEADER: value}
