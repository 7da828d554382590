"""Reading usage off a forwarded stream without translating it.

When client and upstream speak the same protocol the gateway forwards each SSE event's
bytes as received. A tap looks at each event just enough to bill it: the usage the
upstream reports, and the amount of output seen so far, in case the stream is cut before
the usage arrives. It can also hold back an event the client did not ask for (the usage
chunk the gateway requested from an OpenAI upstream on its own behalf).
"""

from __future__ import annotations

from typing import Any

import orjson

from hypereal.llm import anthropic, openai_chat, openai_responses, sse
from hypereal.llm.types import Usage


class Tap:
    def __init__(self) -> None:
        self.usage: Usage | None = None
        """Final usage as the upstream reported it; None until then."""
        self.input_tokens = 0
        """Input tokens reported early (Anthropic's message_start), for billing a cut stream."""
        self.output_chars = 0
        self.finished = False
        self.failed = False
        """The upstream reported an error in the stream (forwarded to the client as it came)."""

    def observe(self, event: sse.Event) -> bytes | None:
        """The bytes to forward for `event` (None to hold it back), after reading it."""
        raise NotImplementedError

    @staticmethod
    def usage_of(payload: dict[str, Any]) -> Usage | None:
        """The usage in a forwarded non-streaming answer of this protocol, if reported."""
        raise NotImplementedError

    @staticmethod
    def _load(data: bytes) -> dict[str, Any] | None:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


class OpenAIChatTap(Tap):
    def __init__(self, forward_usage: bool) -> None:
        super().__init__()
        self.forward_usage = forward_usage

    def observe(self, event: sse.Event) -> bytes | None:
        if event.data == sse.DONE:
            self.finished = True
            return event.raw
        chunk = self._load(event.data)
        if chunk is None:
            return event.raw
        if chunk.get("error") is not None:
            self.failed = True
        choices = chunk.get("choices") or ()
        for choice in choices:
            delta = choice.get("delta") or {}
            for key in ("content", "reasoning_content", "refusal"):
                value = delta.get(key)
                if isinstance(value, str):
                    self.output_chars += len(value)
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                self.output_chars += len(function.get("arguments") or "") + len(function.get("name") or "")
            if choice.get("finish_reason"):
                self.finished = True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = openai_chat.decode_usage(usage)
            if not choices and not self.forward_usage:
                return None
        return event.raw

    @staticmethod
    def usage_of(payload: dict[str, Any]) -> Usage | None:
        raw = payload.get("usage")
        return openai_chat.decode_usage(raw) if isinstance(raw, dict) else None


class AnthropicTap(Tap):
    def __init__(self) -> None:
        super().__init__()
        self._start = Usage()

    @staticmethod
    def usage_of(payload: dict[str, Any]) -> Usage | None:
        raw = payload.get("usage")
        return anthropic.decode_usage(raw) if isinstance(raw, dict) else None

    def observe(self, event: sse.Event) -> bytes | None:
        payload = self._load(event.data)
        if payload is None:
            return event.raw
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            for key in ("text", "partial_json", "thinking"):
                value = delta.get(key)
                if isinstance(value, str):
                    self.output_chars += len(value)
        elif kind == "message_start":
            usage = anthropic.decode_usage((payload.get("message") or {}).get("usage"))
            self.input_tokens = usage.input_tokens
            self._start = usage
        elif kind == "message_delta":
            raw = payload.get("usage")
            if isinstance(raw, dict):
                merged = {**anthropic.encode_usage(self._start), **{k: v for k, v in raw.items() if v is not None}}
                self.usage = anthropic.decode_usage(merged)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.failed = True
        return event.raw


class ResponsesTap(Tap):
    DELTAS = frozenset(
        {
            "response.output_text.delta",
            "response.function_call_arguments.delta",
            "response.reasoning_summary_text.delta",
            "response.refusal.delta",
        }
    )

    @staticmethod
    def usage_of(payload: dict[str, Any]) -> Usage | None:
        raw = payload.get("usage")
        return openai_responses.decode_usage(raw) if isinstance(raw, dict) else None

    def observe(self, event: sse.Event) -> bytes | None:
        payload = self._load(event.data)
        if payload is None:
            return event.raw
        kind = payload.get("type") or event.event
        if kind in self.DELTAS:
            delta = payload.get("delta")
            if isinstance(delta, str):
                self.output_chars += len(delta)
        elif kind == "error":
            self.failed = True
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finished = True
            self.failed = kind == "response.failed"
            usage = (payload.get("response") or {}).get("usage")
            if isinstance(usage, dict):
                self.usage = openai_responses.decode_usage(usage)
        return event.raw
