"""Running the golden translation cases in tests/unit/golden/llm.

Each case file holds the published example it was built from (`source`), the conversion
(`kind`), the `input` and the `expected` output. Generated ids are made deterministic and
timestamps zeroed, so the files compare exactly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from hypereal.llm import (
    anthropic,
    anthropic_stream,
    openai_chat,
    openai_chat_stream,
    openai_responses,
    openai_responses_stream,
    sse,
    types,
)
from hypereal.llm.types import StreamEvent

GOLDEN = Path(__file__).parent / "golden" / "llm"
CODEC_MODULES = (
    anthropic,
    anthropic_stream,
    openai_chat,
    openai_chat_stream,
    openai_responses,
    openai_responses_stream,
)


@pytest.fixture(autouse=True)
def deterministic_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    counter = itertools.count(1)

    def new_id(prefix: str) -> str:
        return f"{prefix}{next(counter):04d}"

    for module in (*CODEC_MODULES, types):
        if hasattr(module, "new_id"):
            monkeypatch.setattr(module, "new_id", new_id)
    yield


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: 0 if k in ("created", "created_at") else normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in sse.Parser().feed(raw):
        data: Any = event.data.decode() if event.data == sse.DONE else orjson.loads(event.data)
        out.append({"event": event.event, "data": data} if event.event else {"data": data})
    return out


def upstream_events(kind: str, items: list[Any]) -> list[StreamEvent]:
    """Decode an upstream stream given as a list of payloads ({"event", "data"} for named events)."""
    events: list[StreamEvent] = []
    if kind == "chat":
        chat = openai_chat_stream.StreamDecoder()
        for item in items:
            events += chat.feed(item.encode() if isinstance(item, str) else orjson.dumps(item))
        return events + chat.finish()
    decoder: Any = anthropic_stream.StreamDecoder() if kind == "anthropic" else openai_responses_stream.StreamDecoder()
    for item in items:
        events += decoder.feed(item["event"], orjson.dumps(item["data"]))
    return events + decoder.finish()


def encode_stream(kind: str, events: list[StreamEvent], request: dict[str, Any]) -> list[dict[str, Any]]:
    encoder: Any
    if kind == "chat":
        encoder = openai_chat_stream.StreamEncoder("served-model", include_usage=True, created=1)
    elif kind == "anthropic":
        encoder = anthropic_stream.StreamEncoder("served-model", input_tokens=0)
    else:
        encoder = openai_responses_stream.StreamEncoder("served-model", request)
    return parse_sse(b"".join(encoder.encode(event) for event in events))


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "chat_request_to_anthropic": lambda body: anthropic.encode_request(
        replace(openai_chat.decode_request(body), model="upstream-model")
    ),
    "chat_request_to_responses": lambda body: openai_responses.encode_request(
        replace(openai_chat.decode_request(body), model="upstream-model")
    ),
    "anthropic_request_to_chat": lambda body: openai_chat.encode_request(
        replace(anthropic.decode_request(body), model="upstream-model")
    ),
    "responses_request_to_anthropic": lambda body: anthropic.encode_request(
        replace(openai_responses.decode_request(body), model="upstream-model")
    ),
    "responses_request_to_chat": lambda body: openai_chat.encode_request(
        replace(openai_responses.decode_request(body), model="upstream-model")
    ),
    "chat_response_to_anthropic": lambda body: anthropic.encode_response(
        openai_chat.decode_response(body), "served-model"
    ),
    "chat_response_to_responses": lambda body: openai_responses.encode_response(
        openai_chat.decode_response(body), "served-model", {}
    ),
    "anthropic_response_to_chat": lambda body: openai_chat.encode_response(
        anthropic.decode_response(body), "served-model"
    ),
    "anthropic_response_to_responses": lambda body: openai_responses.encode_response(
        anthropic.decode_response(body), "served-model", {}
    ),
    "responses_response_to_anthropic": lambda body: anthropic.encode_response(
        openai_responses.decode_response(body), "served-model"
    ),
    "chat_stream_to_anthropic": lambda items: encode_stream("anthropic", upstream_events("chat", items), {}),
    "chat_stream_to_responses": lambda items: encode_stream("responses", upstream_events("chat", items), {}),
    "anthropic_stream_to_chat": lambda items: encode_stream("chat", upstream_events("anthropic", items), {}),
    "anthropic_stream_to_responses": lambda items: encode_stream("responses", upstream_events("anthropic", items), {}),
    "responses_stream_to_anthropic": lambda items: encode_stream("anthropic", upstream_events("responses", items), {}),
    "responses_stream_to_chat": lambda items: encode_stream("chat", upstream_events("responses", items), {}),
}


def cases(prefix: str) -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in sorted(GOLDEN.glob(f"{prefix}*.json"))]


def run_case(path: Path) -> tuple[Any, Any]:
    case = json.loads(path.read_text())
    assert case["source"].startswith("https://"), "each case names the published example it was built from"
    return normalise(CONVERSIONS[case["kind"]](case["input"])), case["expected"]


def write_expected(path: Path) -> None:
    """Refresh a case's expected output from the current code (review the diff before committing)."""
    case = json.loads(path.read_text())
    case["expected"] = normalise(CONVERSIONS[case["kind"]](case["input"]))
    path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("path", cases(""))
def test_golden_translation(path: Path) -> None:
    actual, expected = run_case(path)
    assert actual == expected
