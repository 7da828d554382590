"""The chat provider interface, the HTTP base the remote ones share, and the per-process hub.

A chat provider answers canonical requests (`complete`, `stream`). One whose upstream
speaks a surface's wire format natively also lists that protocol in `passthrough`, and
then the surface forwards the client's body and the upstream's bytes (`forward`,
`forward_stream`) with only the parsing billing needs: the hot path of a gateway whose
clients mostly call a model in its own protocol. A translated request may carry tools a
vendor defines (`HostedTool`); `refusal` tells, before any call, whether this upstream runs
them all, so that the gateway can prefer a route that does. An upstream given tools it
cannot run answers without them and reports them dropped (`hypereal.llm.tolerance`).

Upstream failures are translated by the table every adapter shares,
`hypereal.providers.failures`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from hypereal.catalog.providers import AnthropicConfig, OpenAICompatibleConfig, OpenAIConfig, ProviderBase
from hypereal.errors import HyperealError, UpstreamError, UpstreamTimeout, ValidationFailed
from hypereal.llm import sse
from hypereal.llm.hosted_tools import cannot_run
from hypereal.llm.types import ChatRequest, ChatResponse, StreamEvent, Wire
from hypereal.providers import failures
from hypereal.providers.base import Provider
from hypereal.providers.http1 import ConnectionFailed, Http1Pool

log = logging.getLogger(__name__)

Protocol = Wire
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An upstream's non-streaming answer in the client's own protocol, body untouched."""

    status: int
    body: bytes
    payload: dict[str, Any]
    """The body parsed, for reading usage."""


class ChatProvider(Provider, abc.ABC):
    passthrough: ClassVar[frozenset[Protocol]] = frozenset()
    offline: ClassVar[bool] = False
    """A stand-in that answers without a real model (never picked as a default)."""

    def __init__(self, config: ProviderBase) -> None:
        super().__init__(config)
        self.name = self.type
        """The catalog's name for this provider instance, which answers say they were served by."""

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One answer for a canonical request whose `model` is the upstream's model id."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The answer as canonical events; raises HyperealError if the upstream fails mid-way."""

    async def forward(self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]) -> Forwarded:
        raise NotImplementedError(f"{self.type} does not forward {protocol}")

    def forward_stream(
        self, protocol: Protocol, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[list[sse.Event]]:
        """The upstream's events in the batches they arrived in: a relay writes each batch at once."""
        raise NotImplementedError(f"{self.type} does not forward {protocol}")

    def forwards(self, protocol: Protocol, model: str, body: dict[str, Any] | None = None) -> bool:
        """Whether a client speaking `protocol` to `model` (with `body`, when known) can be
        forwarded to this upstream as is."""
        return protocol in self.passthrough

    def native_choices(self, model: str, hosted_tools: bool = False) -> bool:
        """Whether one call to `model` (with hosted tools or not) answers with the `n` choices a
        request asks for, billing its prompt once; when not, the gateway makes one call per choice."""
        return False

    def refusal(self, request: ChatRequest) -> ValidationFailed | None:
        """Why this upstream cannot run all the hosted tools of `request` (whose `model` is the
        upstream's), as the 400 a client forcing one of them gets; None when it runs them all."""
        return cannot_run(request.hosted_tools[0], self.type) if request.hosted_tools else None

    def available(self) -> bool:
        return self.config.configured


def _message_of(raw: bytes) -> str:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode("utf-8", "replace").strip()
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return raw[:300].decode("utf-8", "replace").strip()


class HttpChatProvider(ChatProvider):
    """A provider behind HTTP(S): one pool of keep-alive connections per instance, made on first use."""

    default_base_url: ClassVar[str] = ""
    config: OpenAIConfig | OpenAICompatibleConfig | AnthropicConfig

    def __init__(self, config: OpenAIConfig | OpenAICompatibleConfig | AnthropicConfig) -> None:
        super().__init__(config)
        base = config.base_url or self.default_base_url
        if not base:
            raise ValueError(f"provider type {self.type} needs a base_url")
        self.base_url = base.rstrip("/")
        self._pool: Http1Pool | None = None

    def headers(self) -> dict[str, str]:
        return {}

    def pool(self) -> Http1Pool:
        if self._pool is None:
            self._pool = Http1Pool(
                self.base_url,
                max_connections=self.config.deployment.max_connections or self.config.options.max_connections,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=self.config.timeout_seconds,
            )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    async def post_json(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Forwarded:
        try:
            answer = await self.pool().request("POST", path, self._headers(headers), orjson.dumps(body))
        except TimeoutError as exc:
            raise failures.timed_out(self.name) from exc
        except ConnectionFailed as exc:
            raise failures.unreachable(self.name, str(exc)) from exc
        if answer.status >= 400:
            raise self._failure(answer.status, answer.body, answer.headers)
        try:
            payload = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream answered with a body that is not JSON") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("Upstream answered with a body that is not a JSON object")
        return Forwarded(answer.status, answer.body, payload)

    async def post_events(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> AsyncIterator[sse.Event]:
        """The upstream's SSE events as they arrive; errors before the first one raise as usual."""
        async for batch in self.post_event_batches(path, body, headers):
            for event in batch:
                yield event

    async def post_event_batches(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> AsyncIterator[list[sse.Event]]:
        """`post_events`, the events of each piece read from the upstream together."""
        parser = sse.Parser()
        try:
            async with self.pool().open("POST", path, self._headers(headers), orjson.dumps(body)) as answer:
                if answer.status >= 400:
                    raise self._failure(answer.status, await answer.read(), answer.headers)
                async for chunk in answer.chunks():
                    batch = list(parser.feed(chunk))
                    if batch:
                        yield batch
                rest = list(parser.close())
                if rest:
                    yield rest
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name} stopped sending before the answer was complete") from exc
        except ConnectionFailed as exc:
            raise failures.unreachable(self.name, str(exc)) from exc

    def _failure(self, status: int, body: bytes, headers: dict[str, str]) -> HyperealError:
        return failures.status_error(self.name, status, _message_of(body), headers.get("retry-after"))

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.headers()}
        if extra:
            headers.update(extra)
        return headers
