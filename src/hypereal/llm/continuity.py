"""Reasoning continuity tokens across vendors: who made one, and where it may go.

Anthropic signs its thinking blocks (`signature`; a `redacted_thinking` block's `data` is
its too) and OpenAI encrypts its reasoning items (`encrypted_content`). Each vendor checks
the tokens a request carries and refuses the request over one it did not make, so a
conversation that changes models keeps each token for its own vendor:

    read from a client or upstream   the wire format's vendor's token, unless it carries
                                     our tag for another: `hypereal.<vendor>.<token>`
    written to a client              its own vendor's as is, another's tagged, so that a
                                     client keeping the history sends it back unchanged;
                                     reasoning without a vendor's token gets `UNSIGNED`
    written to an upstream           its vendor's untagged; another's is not sent (the
                                     thinking block or the reasoning item is left out)

A body of the upstream's own protocol is forwarded as the client sent it; it is walked for
tagged tokens only when its bytes hold the tag (`MARKER`), and then loses every token of
another vendor (`anthropic_own`, `responses_own`).

Web search results reach Anthropic clients as Anthropic's blocks, but without the
`encrypted_content` (and citations without the `encrypted_index`) Anthropic verifies, as
only Anthropic's own searches have them: those carry the tag with an empty token
(`FOREIGN_SEARCH`), so that the forwarded body leaves them out too.
"""

from __future__ import annotations

from typing import Any

from hypereal.llm.types import ThinkingPart, Vendor

VENDORS: tuple[Vendor, ...] = ("anthropic", "openai")
MARKER = b'"hypereal.'
"""What the raw bytes of a body carrying a tagged token hold: the tag opening a JSON string."""
UNSIGNED = "hypereal.unsigned"
"""The token of reasoning no vendor signed (from a Chat Completions upstream or a local
model), which clients keep and send back like any other: no upstream takes it."""
REDACTED = "redacted."
"""Before the data of Anthropic's redacted thinking, carried as a reasoning item's token."""
FOREIGN_SEARCH = "hypereal.openai."
"""The encrypted content (and index) of a search result Anthropic did not find."""
SEARCH_BLOCKS = {"server_tool_use": "id", "web_search_tool_result": "tool_use_id"}
"""The blocks of a search, each with the key of the search's id."""


def tag(token: str, origin: Vendor) -> str:
    return f"hypereal.{origin}.{token}"


def read(token: str, vendor: Vendor) -> tuple[str, Vendor]:
    """(token, its vendor) of a token a client or upstream of `vendor` sent."""
    for origin in VENDORS:
        prefix = f"hypereal.{origin}."
        if token.startswith(prefix):
            return token[len(prefix) :], origin
    return token, vendor


def thinking(text: str, token: Any, vendor: Vendor) -> ThinkingPart:
    """A thinking part with the token a client or upstream of `vendor` sent beside it, if a string."""
    if not isinstance(token, str) or token == UNSIGNED:
        return ThinkingPart(text)
    signature, origin = read(token, vendor)
    return ThinkingPart(text, signature, origin)


def for_client(token: str | None, origin: Vendor | None, vendor: Vendor) -> str:
    """The token as a client of `vendor` gets it: tagged when another vendor made it."""
    if not token or origin is None:
        return UNSIGNED
    return token if origin == vendor else tag(token, origin)


def for_upstream(part: ThinkingPart, vendor: Vendor) -> str | None:
    """The part's token if an upstream of `vendor` takes it back, else None."""
    return part.signature if part.signature and part.origin == vendor else None


def own(token: str, vendor: Vendor) -> str | None:
    """A token of a body forwarded to an upstream of `vendor`, untagged; None if not `vendor`'s."""
    if token == UNSIGNED:
        return None
    token, origin = read(token, vendor)
    return token if origin == vendor else None


# ---------------------------------------------------------------- forwarded bodies


def anthropic_own(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body with only Anthropic's tokens: thinking signed elsewhere and searches
    run elsewhere are left out, our tag on Anthropic's own taken off."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    kept: list[Any] = []
    dropped_thinking = False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            kept.append(message)
            continue
        blocks, dropped = _anthropic_blocks(content)
        dropped_thinking = dropped_thinking or dropped
        if blocks:
            kept.append({**message, "content": blocks})
    out = {**body, "messages": kept}
    if dropped_thinking and not thinking_may_stay(kept):
        out.pop("thinking", None)
    return out


def _anthropic_blocks(content: list[Any]) -> tuple[list[Any], bool]:
    """(the blocks Anthropic can verify, whether a thinking block was left out)."""
    foreign_searches = {
        block.get("tool_use_id")
        for block in content
        if isinstance(block, dict) and block.get("type") == "web_search_tool_result" and _found_elsewhere(block)
    }
    blocks: list[Any] = []
    dropped = False
    for block in content:
        if not isinstance(block, dict):
            blocks.append(block)
            continue
        kind = block.get("type")
        if kind == "thinking" and isinstance(block.get("signature"), str):
            signature = own(block["signature"], "anthropic")
            if signature is None:
                dropped = True
                continue
            block = {**block, "signature": signature}
        elif kind in SEARCH_BLOCKS and block.get(SEARCH_BLOCKS[kind]) in foreign_searches:
            continue  # the search's call and its results
        elif kind == "text" and isinstance(block.get("citations"), list):
            block = _own_citations(block)
        blocks.append(block)
    return blocks, dropped


def _found_elsewhere(block: dict[str, Any]) -> bool:
    results = block.get("content")
    return isinstance(results, list) and any(
        isinstance(result, dict) and str(result.get("encrypted_content") or "").startswith(FOREIGN_SEARCH)
        for result in results
    )


def _own_citations(block: dict[str, Any]) -> dict[str, Any]:
    citations = [
        citation
        for citation in block["citations"]
        if not (isinstance(citation, dict) and str(citation.get("encrypted_index") or "").startswith(FOREIGN_SEARCH))
    ]
    if citations:
        return {**block, "citations": citations}
    return {key: value for key, value in block.items() if key != "citations"}


def thinking_may_stay(messages: list[Any]) -> bool:
    """Whether thinking may stay on: Anthropic refuses it when the last assistant turn, whose
    tool calls the request answers, does not open with a thinking block."""
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), None)
    content = last.get("content") if last is not None else None
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
        return True
    first = content[0] if content else None
    return isinstance(first, dict) and first.get("type") in ("thinking", "redacted_thinking")


def responses_own(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses body with only OpenAI's tokens: reasoning items of another vendor are left
    out (OpenAI knows neither their content nor their ids), our tag on OpenAI's own taken off."""
    items = body.get("input")
    if not isinstance(items, list):
        return body
    kept: list[Any] = []
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("type") == "reasoning"
            and isinstance(item.get("encrypted_content"), str)
        ):
            token = own(item["encrypted_content"], "openai")
            if token is None:
                continue
            item = {**item, "encrypted_content": token}
        kept.append(item)
    return {**body, "input": kept}
