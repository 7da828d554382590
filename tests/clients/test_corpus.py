"""Every request the real clients sent (corpus/<client>-<version>/, recorded by
scripts/update-clients) is accepted by its surface and translated by every route.

Each LLM request in the corpus is decoded by its surface's decoder, encoded for each upstream
format (Anthropic Messages, Chat Completions, Responses), and offered to local-echo, which
runs no hosted tool; none may be refused (`hypereal.llm.tolerance`: what a route cannot run
is dropped, unless the client forces it). What comes out is compared with a golden in
goldens/<client>-<version>/, of the same name as the request: not a copy of the 40 KB
bodies but what a reviewer needs to see of each route, the roles in order, the tools by
name, the top-level fields, and what the translation dropped (`ChatRequest.dropped`). A new
client release is then one command and a diff of these summaries. `UPDATE_GOLDENS=1` writes
the goldens anew instead of comparing; review the diff before committing it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypereal.llm import anthropic, openai_chat, openai_responses, tolerance
from hypereal.llm.types import ChatRequest
from tests.clients.programs import CLIENTS_DIR, PROGRAMS
from tests.clients.update import CORPUS, ROOT, readme_pin

GOLDENS = CLIENTS_DIR / "goldens"
DECODERS: dict[str, Callable[[dict[str, Any]], ChatRequest]] = {
    "anthropic-messages": anthropic.decode_request,
    "openai-chat": openai_chat.decode_request,
    "openai-responses": openai_responses.decode_request,
}
ENCODERS: dict[str, Callable[[ChatRequest], dict[str, Any]]] = {
    "anthropic-messages": anthropic.encode_request,
    "openai-chat": openai_chat.encode_request,
    "openai-responses": openai_responses.encode_request,
}
REQUESTS = sorted(path for path in CORPUS.glob("*/*.json") if path.stem.split("-", 1)[1] in DECODERS)


def replayed(path: Path) -> dict[str, Any]:
    """The summary of one captured request through its decoder and every encoder."""
    body = json.loads(path.read_text())["body"]
    request = DECODERS[path.stem.split("-", 1)[1]](body)
    assert tolerance.forced_hosted(request) is None, "the client forces a hosted tool"
    routes = {}
    for name, encode in ENCODERS.items():
        translated = copy.deepcopy(request)
        routes[name] = {**outline(encode(translated)), "dropped": list(translated.dropped)}
    echoed = copy.deepcopy(request)
    tolerance.takes_nothing(echoed)
    routes["local-echo"] = {"dropped": list(echoed.dropped)}
    return {"source": str(path.relative_to(ROOT)), "decoded": decoded(request), "routes": routes}


def decoded(request: ChatRequest) -> dict[str, Any]:
    return {
        "roles": [message.role for message in request.messages],
        "system_parts": len(request.system),
        "tools": [tool.name for tool in request.tools],
        "hosted_tools": [tool.type for tool in request.hosted_tools],
        "tool_choice": request.tool_choice.mode if request.tool_choice else None,
        "max_tokens": request.max_tokens,
        "reasoning_effort": request.reasoning_effort,
        "thinking_budget": request.thinking_budget,
        "stream": request.stream,
        "dropped": list(request.dropped),
    }


def outline(body: dict[str, Any]) -> dict[str, Any]:
    """An upstream body in brief: its fields, the roles (or item types) in order, the tools by name."""
    turns = body.get("messages", body.get("input"))
    if isinstance(turns, list):
        roles = [str(turn.get("role") or turn.get("type")) for turn in turns]
    else:
        roles = ["(text)"] if turns else []
    tools = [
        str(tool.get("name") or (tool.get("function") or {}).get("name") or tool.get("type"))
        for tool in body.get("tools") or []
    ]
    return {"fields": sorted(body), "roles": roles, "tools": tools}


def readable(summary: dict[str, Any]) -> str:
    """JSON with each list of names on one line, so a golden reads (and diffs) as a table."""
    text = json.dumps(summary, indent=2)
    flat = re.compile(r"\[\n\s+([^\[\]{}]*?)\n\s*\]")
    return flat.sub(lambda match: "[" + re.sub(r",\n\s+", ", ", match.group(1)) + "]", text) + "\n"


@pytest.mark.parametrize("path", REQUESTS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_a_captured_request_is_accepted_and_translated_by_every_route(path: Path) -> None:
    summary = replayed(path)

    golden = GOLDENS / path.parent.name / path.name
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(readable(summary))
    assert golden.exists(), f"no golden for {path.name}: run with UPDATE_GOLDENS=1, then review it"
    assert summary == json.loads(golden.read_text())


def test_the_corpus_holds_the_pinned_version_of_each_client() -> None:
    for program in PROGRAMS:
        recorded = CORPUS / f"{program.name}-{program.version()}"
        assert any(recorded.glob("*.json")), f"{recorded.name}: record it with scripts/update-clients"


def test_the_readme_names_the_pinned_versions() -> None:
    readme = (ROOT / "README.md").read_text()
    for program in PROGRAMS:
        named = readme_pin(program.package).search(readme)
        assert named is not None and named.group(1) == program.version(), program.package
