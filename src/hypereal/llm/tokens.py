"""A cheap, deterministic token estimate.

Used where no tokenizer answer is available or worth its cost: to size a reservation before
the upstream call, to bill a stream that was cut before the upstream reported usage, for
`/messages/count_tokens`, and as the usage of the local echo model. About four bytes of
UTF-8 per token, which is close for English and code and errs high for other scripts.
"""

from __future__ import annotations

import orjson

from hypereal.llm.types import (
    ChatRequest,
    ImagePart,
    Part,
    RedactedThinkingPart,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
)

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3
IMAGE_TOKENS = 800
TOOL_OVERHEAD = 8


def text_tokens(text: str) -> int:
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    return (size + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN


def chars_to_tokens(chars: int) -> int:
    return (chars + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN


def part_tokens(part: Part) -> int:
    if isinstance(part, TextPart):
        return text_tokens(part.text)
    if isinstance(part, ImagePart):
        return IMAGE_TOKENS
    if isinstance(part, ToolUsePart):
        return text_tokens(part.name) + text_tokens(part.arguments) + TOOL_OVERHEAD
    if isinstance(part, ToolResultPart):
        return TOOL_OVERHEAD + sum(part_tokens(inner) for inner in part.content)
    if isinstance(part, ThinkingPart):
        return text_tokens(part.text)
    if isinstance(part, RedactedThinkingPart):
        return text_tokens(part.data) // 2
    return 0


def request_tokens(request: ChatRequest) -> int:
    """Prompt tokens of a request: system, messages and tool definitions."""
    total = REQUEST_OVERHEAD + sum(text_tokens(part.text) for part in request.system)
    for message in request.messages:
        total += MESSAGE_OVERHEAD + sum(part_tokens(part) for part in message.content)
    for tool in request.tools:
        total += TOOL_OVERHEAD + text_tokens(tool.name) + text_tokens(tool.description or "")
        total += text_tokens(orjson.dumps(tool.format or tool.parameters).decode())
    return total
