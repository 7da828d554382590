"""Running the golden translation cases in tests/unit/golden/llm.

Each case file holds the published example it was built from (`source`), the conversion
(`kind`), the `input` and the `expected` output. Generated ids are made deterministic and
timestamps zeroed, so the files compare exactly. A case whose answer comes from an upstream
may say what the client asked for: `request`, the client's body (a Responses client's tools
decide how calls come back), and `custom_tools`, the custom tools the upstream was offered
as functions (their calls are unwrapped). A request case lists in `dropped` what its
translation reported leaving out (`hypereal.llm.tolerance`); without that key, nothing.
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
    openai_responses_items,
    openai_responses_stream,
    sse,
    tolerance,
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
    openai_responses_items,
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


def upstream_events(kind: str, items: list[Any], custom: frozenset[str] = frozenset()) -> list[StreamEvent]:
    """Decode an upstream stream given as a list of payloads ({"event", "data"} for named events)."""
    events: list[StreamEvent] = []
    if kind == "chat":
        chat = openai_chat_stream.StreamDecoder(custom)
        for item in items:
            events += chat.feed(item.encode() if isinstance(item, str) else orjson.dumps(item))
        return events + chat.finish()
    decoder: Any = (
        anthropic_stream.StreamDecoder(custom) if kind == "anthropic" else openai_responses_stream.StreamDecoder()
    )
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


Case = dict[str, Any]
Decode = Callable[[dict[str, Any]], types.ChatRequest]
Encode = Callable[[types.ChatRequest], dict[str, Any]]
REQUESTS: dict[str, tuple[Decode, Encode]] = {
    "chat_request_to_anthropic": (openai_chat.decode_request, anthropic.encode_request),
    "chat_request_to_responses": (openai_chat.decode_request, openai_responses.encode_request),
    "chat_request_to_chat": (openai_chat.decode_request, openai_chat.encode_request),
    "chat_request_to_compatible": (
        openai_chat.decode_request,
        lambda request: openai_chat.encode_request(request, native_custom=False),
    ),
    "anthropic_request_to_anthropic": (anthropic.decode_request, anthropic.encode_request),
    "anthropic_request_to_chat": (anthropic.decode_request, openai_chat.encode_request),
    "anthropic_request_to_responses": (anthropic.decode_request, openai_responses.encode_request),
    "anthropic_request_to_search_chat": (
        anthropic.decode_request,
        lambda request: openai_chat.encode_request(request, searches=True),
    ),
    "responses_request_to_anthropic": (openai_responses.decode_request, anthropic.encode_request),
    "responses_request_to_chat": (openai_responses.decode_request, openai_chat.encode_request),
    "responses_request_to_responses": (openai_responses.decode_request, openai_responses.encode_request),
}
"""Requests: the client's body decoded, then encoded for an upstream; what the two left out
is the case's `dropped` (none when the case has no such key)."""
CONVERSIONS: dict[str, Callable[[Any, Case], Any]] = {
    "chat_response_to_anthropic": lambda body, case: anthropic.encode_response(
        openai_chat.decode_response(body, _custom(case)), "served-model"
    ),
    "chat_response_to_responses": lambda body, case: openai_responses.encode_response(
        openai_chat.decode_response(body, _custom(case)), "served-model", case.get("request", {})
    ),
    "anthropic_response_to_chat": lambda body, case: openai_chat.encode_response(
        anthropic.decode_response(body, _custom(case)), "served-model"
    ),
    "anthropic_response_to_responses": lambda body, case: openai_responses.encode_response(
        anthropic.decode_response(body, _custom(case)), "served-model", case.get("request", {})
    ),
    "responses_response_to_anthropic": lambda body, case: anthropic.encode_response(
        openai_responses.decode_response(body), "served-model"
    ),
    "responses_response_to_chat": lambda body, case: openai_chat.encode_response(
        openai_responses.decode_response(body), "served-model"
    ),
    "chat_stream_to_anthropic": lambda items, case: _restream("chat", "anthropic", items, case),
    "chat_stream_to_responses": lambda items, case: _restream("chat", "responses", items, case),
    "anthropic_stream_to_chat": lambda items, case: _restream("anthropic", "chat", items, case),
    "anthropic_stream_to_responses": lambda items, case: _restream("anthropic", "responses", items, case),
    "responses_stream_to_anthropic": lambda items, case: _restream("responses", "anthropic", items, case),
    "responses_stream_to_chat": lambda items, case: _restream("responses", "chat", items, case),
}


def _custom(case: Case) -> frozenset[str]:
    return frozenset(case.get("custom_tools", ()))


def _restream(upstream: str, client: str, items: list[Any], case: Case) -> list[dict[str, Any]]:
    return encode_stream(client, upstream_events(upstream, items, _custom(case)), case.get("request", {}))


def cases(prefix: str) -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in sorted(GOLDEN.glob(f"{prefix}*.json"))]


def convert(case: Case) -> tuple[Any, list[str]]:
    """The case's output, and what the translation reported dropped."""
    if case["kind"] in REQUESTS:
        decode, encode = REQUESTS[case["kind"]]
        request = replace(decode(case["input"]), model="upstream-model")
        body = encode(request)
        return normalise(body), tolerance.summary(request.dropped)
    return normalise(CONVERSIONS[case["kind"]](case["input"], case)), []


def run_case(path: Path) -> tuple[tuple[Any, list[str]], tuple[Any, list[str]]]:
    case = json.loads(path.read_text())
    assert case["source"].startswith("https://"), "each case names the published example it was built from"
    return convert(case), (case["expected"], case.get("dropped", []))


def write_expected(path: Path) -> None:
    """Refresh a case's expected output from the current code (review the diff before committing)."""
    case = json.loads(path.read_text())
    case["expected"], dropped = convert(case)
    case.pop("dropped", None)
    if dropped:
        case["dropped"] = dropped
    path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("path", cases(""))
def test_golden_translation(path: Path) -> None:
    (actual, dropped), (expected, expected_dropped) = run_case(path)
    assert actual == expected
    assert dropped == expected_dropped
