"""Tools in namespaces, for upstreams that know only flat function names.

The Responses API groups function and custom tools under a `namespace` tool (Codex offers
its sub-agent tools as `multi_agent_v1`); the model's call names the tool and its namespace
apart, a `function_call` (or `custom_tool_call`) item with `name` and `namespace`, which is
how Codex reads a call and sends it back in `input` (codex-rs/core/src/tools/router.rs:
`ToolName::new(namespace, name)`).

Every translated upstream is offered each tool of a namespace as a tool of its own, named
as Codex names one where a namespace cannot be kept (codex-rs/protocol/src/tool_name.rs,
`canonical_flat_name`): `<namespace>__<name>`. A pair whose joined name would not fit the
names upstreams take (`^[a-zA-Z0-9_-]{1,64}$`, OpenAI's and Anthropic's rule) gets a
shortened name ending in a hash of the pair, so one pair always has one name.

The canonical form knows only the flat names. The Responses surface joins the pair of an
earlier call the client sends back, and splits a call's flat name again for the client by
the namespaces that client declared (`declared`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hypereal.llm import fields

NAMESPACE = "namespace"
SEPARATOR = "__"
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_OUTSIDE_NAME = re.compile(r"[^a-zA-Z0-9_-]")
HASH_CHARS = 12


def flat_name(namespace: str, name: str) -> str:
    """The name a tool of `namespace` is offered under where namespaces are not known."""
    joined = namespace.rstrip("_") + SEPARATOR + name.lstrip("_")
    if NAME.match(joined):
        return joined
    digest = hashlib.sha256(f"{namespace}\0{name}".encode()).hexdigest()[:HASH_CHARS]
    readable = _OUTSIDE_NAME.sub("_", joined)[: 64 - 1 - HASH_CHARS]
    return f"{readable}_{digest}"


def call_name(item: dict[str, Any]) -> str:
    """The flat name of a call item, which names its namespace apart when it has one."""
    name = str(item.get("name") or "")
    namespace = item.get(NAMESPACE)
    return flat_name(namespace, name) if isinstance(namespace, str) and namespace else name


def flattened(tool: dict[str, Any], where: str) -> list[tuple[dict[str, Any], str]]:
    """The tools of a namespace tool, each under its flat name, with where each was."""
    namespace = fields.string(tool, "name", required=True)
    assert namespace is not None
    inner = fields.array(tool, "tools")
    out: list[tuple[dict[str, Any], str]] = []
    for index, raw in enumerate(inner):
        spec = fields.mapping(raw, f"{where}.tools.{index}")
        name = spec.get("name")
        out.append(({**spec, "name": flat_name(namespace, str(name or ""))}, f"{where}.tools.{index}"))
    return out


def declared(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """flat name → (namespace, name) of the namespaced tools a client's Responses body offers."""
    names: dict[str, tuple[str, str]] = {}
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or tool.get("type") != NAMESPACE or not isinstance(tool.get("name"), str):
            continue
        inner_tools = tool.get("tools")
        for inner in inner_tools if isinstance(inner_tools, list) else ():
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                names[flat_name(tool["name"], inner["name"])] = (tool["name"], inner["name"])
    return names
