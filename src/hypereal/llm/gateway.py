"""One billed chat call, whatever the surface: route, reserve, call, settle or refund.

    plan      the routes to try, in order (`hypereal.routing`): the catalog's, those whose
              key is set, as the caller's `provider` preferences (a top-level body key,
              taken out of the body so that no upstream sees it) and the routes' health say
    reserve   prompt estimate + the most output allowed, at the dearest planned route's
              prices (402 here, before any upstream call, when the balance cannot cover
              it); for `n` choices the output n times, and the prompt n times too when a
              route makes one call per choice (`hypereal.llm.fanout`)
    route     a translated request with hosted tools (web search, …) goes to the routes
              whose upstream runs them all; when none does, to every route, each dropping
              those it cannot run, unless the client forces one with its `tool_choice`: then
              to the routes that run that one, and when none does its refusal is the answer
              (a 400), before anything is reserved
    call      each route in order; a route whose upstream speaks the surface's protocol is
              forwarded as is (less the reasoning tokens of other vendors, `continuity`),
              the others are translated through the canonical types; a failure before the
              first byte reaches the client that another route may not meet (a lost
              connection, a timeout, 429, 5xx, our key refused, no such model:
              `failures.FAILS_OVER`) moves on to the next route; each attempt is reported
              to the routes' health with its time to the first byte
    settle    at the answering route's prices, to the usage the upstream reported (counted
              when it said nothing), never below the per-message minimum and never above the
              reservation
    refund    everything, when every route failed before producing output

A stream cut by the client or by the upstream is billed for what was produced; the
settlement runs shielded from the cancellation that a client disconnect causes.

Every answer says who served it, `x-hypereal-served-by: <catalog provider>/<upstream model>`,
which routes failed before it, `x-hypereal-tried: <route>=<status, timeout or unreachable>, …,
<route>=ok` (only when one did), and, when it was translated, what the translation left out,
`x-hypereal-dropped` (`hypereal.llm.tolerance`, logged once naming the route that answered): the headers of
`Completed` and `Opened`. A forwarded call drops nothing and pays nothing for it. A model
served by its local stand-in under HYPEREAL_LOCAL_FALLBACK is billed at the stand-in's
price, and its ledger entry says so (`chat claude-sonnet-4-6 via local-echo`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar
from typing import Protocol as TypingProtocol

import anyio

from hypereal.billing import new_reference
from hypereal.catalog import ModelSpec, Pricing
from hypereal.errors import HyperealError, NotConfigured, UpstreamError, UpstreamTimeout
from hypereal.keys import Principal
from hypereal.llm import continuity, fanout, pricing, sse, tokens, tolerance
from hypereal.llm.responses_store import ResponseStore
from hypereal.llm.settlements import Settlements
from hypereal.llm.taps import Tap
from hypereal.llm.types import (
    Accumulator,
    ChatRequest,
    ChatResponse,
    StreamEnd,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolUsePart,
    Usage,
)
from hypereal.providers import failures
from hypereal.providers.chat import ChatProvider, Forwarded, Protocol
from hypereal.routing import Target
from hypereal.routing.preferences import take as take_preferences
from hypereal.services import Services
from hypereal.store.ledger import Entry, Source

log = logging.getLogger(__name__)
_T = TypeVar("_T")
DEFAULT_MAX_OUTPUT_TOKENS = 4096
RETRYABLE = failures.FAILS_OVER
SERVED_BY = "x-hypereal-served-by"
TRIED = "x-hypereal-tried"
Route = Target[ChatProvider]


class StreamEncoder(TypingProtocol):
    def encode(self, event: StreamEvent) -> bytes: ...

    def error(self, body: dict[str, Any]) -> bytes: ...


@dataclass(frozen=True)
class Surface:
    """What the gateway needs to know about a client-facing wire format."""

    protocol: Protocol
    decode: Callable[[dict[str, Any]], ChatRequest]
    error_body: Callable[[HyperealError], dict[str, Any]]
    new_tap: Callable[[dict[str, Any]], Tap]
    usage_of: Callable[[dict[str, Any]], Usage | None]
    stream_error: Callable[[dict[str, Any]], bytes]
    """An error event for a forwarded stream, in the protocol's own shape."""
    upstream_body: Callable[[dict[str, Any], str, bool], dict[str, Any]]
    """The client's body made ready to forward: (body, upstream model, stream)."""
    max_tokens_of: Callable[[dict[str, Any]], int | None]
    choices_of: Callable[[dict[str, Any]], int] = lambda body: 1
    """How many choices the body asks for (Chat Completions' `n`)."""
    own_tokens: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """The body without reasoning tokens of other vendors, which the upstream would refuse
    (`hypereal.llm.continuity`); None for a protocol that carries none."""

    def forwardable(self, body: dict[str, Any], raw: bytes) -> dict[str, Any]:
        """The client's body for an upstream of its protocol; walked only when its bytes hold our tag."""
        if self.own_tokens is None or continuity.MARKER not in raw:
            return body
        return self.own_tokens(body)


@dataclass
class Completed:
    spec: ModelSpec
    cost: int
    """Millicredits billed."""
    response: ChatResponse | None = None
    forwarded: Forwarded | None = None
    request: ChatRequest | None = None
    """The decoded request, when the call was translated."""
    headers: dict[str, str] = field(default_factory=dict)
    """For the answer: who served it and what its translation left out (`Call.headers`)."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream whose upstream has sent its first event."""

    chunks: AsyncIterator[bytes]
    headers: dict[str, str]
    """For the answer, as `Completed.headers`."""


@dataclass
class Call:
    """The reservation of one chat call and its single settlement."""

    ledger: Settlements
    principal: Principal
    spec: ModelSpec
    """The model the client asked for, resolved."""
    input_estimate: int
    stand_in: ModelSpec | None = None
    """The local model that serves it instead (HYPEREAL_LOCAL_FALLBACK), whose prices apply."""
    reference: str = field(default_factory=lambda: new_reference("chat"))
    reserved: int = 0
    charged: Entry | None = None
    """The reservation's ledger row, once made."""
    cost: int = 0
    settled: bool = False
    served_by: str = ""
    """`<catalog provider>/<upstream model>` of the route answering."""
    failed: list[str] | None = None
    """The routes tried before it, each `<provider>/<model>=<what happened>`."""
    dropped: Sequence[str] = ()
    """What the answering route's translation left out (`tolerance.summary`)."""
    route_prices: Pricing | None = None
    """The prices of the route answering (`Target.pricing`)."""

    @property
    def prices(self) -> Pricing:
        return self.route_prices or (self.stand_in or self.spec).pricing

    @property
    def headers(self) -> dict[str, str]:
        if self.failed:
            tried = ", ".join([*self.failed, f"{self.served_by}=ok"])
            return {SERVED_BY: self.served_by, TRIED: tried, **tolerance.header(self.dropped)}
        return {SERVED_BY: self.served_by, **tolerance.header(self.dropped)}

    def report(self, dropped: list[str]) -> None:
        """What the answering route's translation left out, logged once and kept for the headers."""
        self.dropped = tolerance.report(dropped, self.spec.id, self.served_by)

    async def reserve(self, routes: list[Route], max_output_tokens: int, choices: int = 1, prompts: int = 1) -> None:
        """Reserve what the dearest of `routes` would cost."""
        prices = routes[0].pricing
        self.reserved = max(
            pricing.reservation(route.pricing, self.input_estimate, max_output_tokens, choices=choices, prompts=prompts)
            for route in (routes if any(route.pricing is not prices for route in routes) else routes[:1])
        )
        source = Source(self.principal.key_id, self.spec.id, self.spec.category)
        note = f"chat {self.spec.id}" + (f" via {self.stand_in.id}" if self.stand_in is not None else "")
        self.charged = await self.ledger.charge(self.principal.account_id, self.reserved, self.reference, note, source)

    def settle(self, usage: Usage) -> int:
        """The cost of `usage`, settled with the next batch of ledger writes; a second call keeps the first."""
        if not self.settled:
            self.settled = True
            self.cost = min(self.reserved, pricing.cost(self.prices, usage))
            if self.charged is not None:
                self.ledger.settle_later(self.charged, self.cost)
        return self.cost

    async def refund(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.ledger.refund(self.principal.account_id, self.reference, "upstream failed")

    def counted(self, input_tokens: int, output_chars: int) -> Usage:
        return Usage(
            input_tokens=input_tokens or self.input_estimate, output_tokens=tokens.chars_to_tokens(output_chars)
        )


class ChatGateway:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.router = services.router
        self.responses = ResponseStore(services.db)
        self.ledger = Settlements(services.billing)

    async def close(self) -> None:
        await self.responses.close()
        await self.ledger.close()

    def default_model(self) -> ModelSpec:
        """For clients of the native /chat that name no model: the first served by a real upstream."""
        fallback: ModelSpec | None = None
        for spec in self.services.catalog.in_category("llm"):
            routes = self.router.configured(spec)
            if routes and not any(route.provider.offline for route in routes):
                return spec
            fallback = fallback or (spec if routes else None)
        if fallback is None:
            raise NotConfigured("No chat model has a configured provider on this server; name a model")
        return fallback

    def _prepare(
        self,
        body: dict[str, Any],
        surface: Surface,
        spec: ModelSpec,
        raw: bytes,
        canonical: ChatRequest | None,
        principal: Principal,
    ) -> tuple[list[Route], ModelSpec | None, ChatRequest | None, int]:
        """The routes planned (`hypereal.routing`), the model's stand-in when one serves it, the
        decoded request (None while it can be forwarded as is) and the prompt estimate.

        Forwarded requests are validated by the upstream; sizing them from the raw body keeps
        the hot path from decoding the whole conversation. A decoded request with hosted tools
        keeps only the routes that run them (`_running`), and is forwarded after all when the
        first of those can take the body as is.
        """
        preferences = take_preferences(body, self.services.catalog.providers, principal.preferences)
        plan = self.router.chat(spec, preferences)
        routes = plan.targets
        decoded = canonical
        if decoded is None and not routes[0].provider.forwards(surface.protocol, routes[0].model, body):
            decoded = surface.decode(body)
        estimate = tokens.request_tokens(decoded) if decoded else tokens.chars_to_tokens(len(raw))
        if decoded is not None and decoded.hosted_tools:
            routes = _running(routes, decoded, surface, body, forwardable=canonical is None)
            if canonical is None and routes[0].provider.forwards(surface.protocol, routes[0].model, body):
                decoded = None
        return routes, plan.stand_in, decoded, estimate

    async def _reserve(
        self,
        call: Call,
        surface: Surface,
        body: dict[str, Any],
        routes: list[Route],
        request: ChatRequest | None,
    ) -> None:
        """Reserve the most any route can cost: each choice's output, each upstream call's prompt."""
        ceiling = call.spec.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        requested = surface.max_tokens_of(body)
        choices = surface.choices_of(body)

        def calls_per_choice(model: str, provider: ChatProvider) -> bool:
            if request is None and provider.forwards(surface.protocol, model, body):
                return False  # the upstream makes the choices
            # Not decoded yet: count hosted tools in, which can only mean more calls.
            return fanout.needed(provider, model, choices, request is None or bool(request.hosted_tools))

        fans_out = choices > 1 and any(calls_per_choice(route.model, route.provider) for route in routes)
        most = min(requested, ceiling) if requested else ceiling
        await call.reserve(routes, most, choices, choices if fans_out else 1)

    async def complete(
        self,
        principal: Principal,
        spec: ModelSpec,
        surface: Surface,
        body: dict[str, Any],
        *,
        raw: bytes,
        headers: dict[str, str],
        canonical: ChatRequest | None = None,
    ) -> Completed:
        """A non-streaming call; `canonical` given means it must be translated (never forwarded)."""
        routes, stand_in, canonical, estimate = self._prepare(body, surface, spec, raw, canonical, principal)
        call = Call(self.ledger, principal, spec, estimate, stand_in)
        await self._reserve(call, surface, body, routes, canonical)

        async def attempt(route: Route) -> Completed:
            nonlocal canonical
            upstream_model, provider = route.model, route.provider
            if canonical is None and provider.forwards(surface.protocol, upstream_model, body):
                upstream_body = surface.upstream_body(surface.forwardable(body, raw), upstream_model, False)
                answer = await provider.forward(surface.protocol, upstream_body, headers)
                usage = surface.usage_of(answer.payload) or call.counted(0, len(answer.body) // 2)
                return Completed(spec, call.settle(usage), forwarded=answer, headers=call.headers)
            canonical = canonical or surface.decode(body)
            request = _attempt(canonical, upstream_model, stream=False)
            complete_one = partial(_counted_answer, call, provider)
            fans_out = fanout.needed(provider, upstream_model, request.n, bool(request.hosted_tools))
            response = await (fanout.complete(complete_one, request) if fans_out else complete_one(request))
            call.report(request.dropped)
            cost = call.settle(response.usage)
            return Completed(spec, cost, response=response, request=canonical, headers=call.headers)

        return await self._first_route(call, routes, attempt)

    async def open_stream(
        self,
        principal: Principal,
        spec: ModelSpec,
        surface: Surface,
        body: dict[str, Any],
        make_encoder: Callable[[ChatRequest, int], StreamEncoder],
        *,
        raw: bytes,
        headers: dict[str, str],
        canonical: ChatRequest | None = None,
        on_response: Callable[[ChatRequest, ChatResponse], Awaitable[None]] | None = None,
        epilogue: Callable[[int], bytes] | None = None,
    ) -> Opened:
        """The stream's bytes, once the upstream sent its first event; failures before that raise.

        `on_response` is awaited before the translated stream's last event is sent. `epilogue`,
        given the settled cost in millicredits, makes the last bytes of a stream that finished
        (the surface's encoder and tap then hold back their own end marker).
        """
        routes, stand_in, canonical, estimate = self._prepare(body, surface, spec, raw, canonical, principal)
        call = Call(self.ledger, principal, spec, estimate, stand_in)
        await self._reserve(call, surface, body, routes, canonical)

        async def attempt(route: Route) -> AsyncIterator[bytes]:
            nonlocal canonical
            upstream_model, provider = route.model, route.provider
            if canonical is None and provider.forwards(surface.protocol, upstream_model, body):
                upstream_body = surface.upstream_body(surface.forwardable(body, raw), upstream_model, True)
                batches = provider.forward_stream(surface.protocol, upstream_body, headers)
                first_batch = await _first(batches)
                return self._relay(call, surface, surface.new_tap(body), first_batch, batches, epilogue)
            canonical = canonical or surface.decode(body)
            request = _attempt(canonical, upstream_model, stream=True)
            fans_out = fanout.needed(provider, upstream_model, request.n, bool(request.hosted_tools))
            stream = fanout.stream(provider.stream, request) if fans_out else provider.stream(request)
            first = await _first(stream)
            encoder = make_encoder(canonical, estimate)
            call.report(request.dropped)
            return self._translate(call, surface, encoder, first, stream, canonical, on_response, epilogue)

        return Opened(await self._first_route(call, routes, attempt), call.headers)

    async def _first_route(self, call: Call, routes: list[Route], attempt: Callable[[Route], Awaitable[_T]]) -> _T:
        """The first route's answer that does not fail in a way another route may not; each
        attempt reported to the routes' health, with its seconds to the first byte. The
        reservation is refunded when none answers, or when anything else goes wrong first."""
        health = self.router.health
        failure: HyperealError | None = None
        try:
            for route in routes:
                call.served_by, call.route_prices = route.label, route.pricing
                started = time.monotonic()
                try:
                    answer = await attempt(route)
                except BaseException as exc:
                    health.record(route.key, exc)
                    if not isinstance(exc, RETRYABLE):
                        raise
                    log.warning("chat route %s for %s failed: %s", route.key, call.spec.id, exc.message)
                    call.failed = [*(call.failed or ()), f"{route.label}={_what_happened(exc)}"]
                    failure = exc
                    continue
                health.record(route.key, None, time.monotonic() - started)
                return answer
        except BaseException:
            await call.refund()
            raise
        await call.refund()
        assert failure is not None
        raise failure

    async def _relay(
        self,
        call: Call,
        surface: Surface,
        tap: Tap,
        first: list[sse.Event],
        batches: AsyncIterator[list[sse.Event]],
        epilogue: Callable[[int], bytes] | None,
    ) -> AsyncIterator[bytes]:
        failed = False
        try:
            async for batch in _chain(first, batches):
                # One write for what one read from the upstream brought, however many events.
                out = b"".join([piece for piece in map(tap.observe, batch) if piece])
                if out:
                    yield out
            failed = tap.failed
            if not tap.finished and not tap.failed:
                failed = True
                yield surface.stream_error(
                    surface.error_body(UpstreamError("Upstream stream ended before it finished"))
                )
            elif epilogue is not None and not failed:
                yield epilogue(call.settle(tap.usage or call.counted(tap.input_tokens, tap.output_chars)))
        except HyperealError as exc:
            failed = True
            yield surface.stream_error(surface.error_body(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await _close(batches)
                if tap.usage is not None:
                    call.settle(tap.usage)
                elif failed and tap.output_chars == 0:
                    await call.refund()
                else:
                    call.settle(call.counted(tap.input_tokens, tap.output_chars))

    async def _translate(
        self,
        call: Call,
        surface: Surface,
        encoder: StreamEncoder,
        first: StreamEvent,
        stream: AsyncIterator[StreamEvent],
        request: ChatRequest,
        on_response: Callable[[ChatRequest, ChatResponse], Awaitable[None]] | None,
        epilogue: Callable[[int], bytes] | None,
    ) -> AsyncIterator[bytes]:
        accumulator = Accumulator()
        failed = False
        try:
            async for event in _chain(first, stream):
                accumulator.add(event)
                if isinstance(event, StreamEnd):
                    if event.usage is None or not event.usage.total_tokens:
                        event.usage = call.counted(accumulator.start_usage.input_tokens, accumulator.output_chars)
                        accumulator.usage = event.usage
                    if on_response is not None:
                        await on_response(request, accumulator.response())
                chunk = encoder.encode(event)
                if chunk:
                    yield chunk
            if epilogue is not None and accumulator.usage is not None:
                yield epilogue(call.settle(accumulator.usage))
        except HyperealError as exc:
            failed = True
            yield encoder.error(surface.error_body(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await _close(stream)
                if accumulator.usage is not None:
                    call.settle(accumulator.usage)
                elif failed and accumulator.output_chars == 0:
                    await call.refund()
                else:
                    counted = call.counted(accumulator.start_usage.input_tokens, accumulator.output_chars)
                    call.settle(counted)


def _attempt(canonical: ChatRequest, model: str, *, stream: bool) -> ChatRequest:
    """The request one route is sent, with a list of drops of its own: what an upstream that
    failed left out is not the answer's."""
    return replace(canonical, model=model, stream=stream, dropped=list(canonical.dropped))


def _running(
    routes: list[Route],
    request: ChatRequest,
    surface: Surface,
    body: dict[str, Any],
    *,
    forwardable: bool,
) -> list[Route]:
    """The routes that run every hosted tool of `request`; when none does, all of them, each
    dropping what it cannot run, or those that run the tool the client forces, if it forces one.

    A route that takes the body as is (`forwardable`: no caller asked for translation) runs
    whatever its upstream runs. When the first route left is translated, so are those after
    it (`ChatGateway.complete`), and those only run what they run translated. Raises the
    first route's refusal when the forced tool runs nowhere.
    """
    forwarded = [forwardable and route.provider.forwards(surface.protocol, route.model, body) for route in routes]
    refusals = [route.provider.refusal(replace(request, model=route.model)) for route in routes]
    able = [index for index in range(len(routes)) if forwarded[index] or refusals[index] is None]
    if able:
        if not forwarded[able[0]]:
            able = [index for index in able if refusals[index] is None]
        return [routes[index] for index in able]
    forced = tolerance.forced_hosted(request)
    if forced is None:
        return routes
    alone = replace(request, hosted_tools=[forced])
    refused = [route.provider.refusal(replace(alone, model=route.model)) for route in routes]
    running = [route for route, refusal in zip(routes, refused, strict=True) if refusal is None]
    if not running:
        raise next(refusal for refusal in refused if refusal is not None)
    return running


def _what_happened(error: HyperealError) -> str:
    """A failed attempt in `x-hypereal-tried`: the upstream's status, else what went wrong."""
    status = error.fields.get("upstream_status")
    if isinstance(status, int):
        return str(status)
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    return "unreachable" if isinstance(error, UpstreamError) else str(error.status)


async def _first(stream: AsyncIterator[Any]) -> Any:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        raise UpstreamError("Upstream sent an empty stream") from None


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


async def _close(stream: AsyncIterator[Any]) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:
            log.debug("closing an upstream stream failed", exc_info=True)


async def _counted_answer(call: Call, provider: ChatProvider, request: ChatRequest) -> ChatResponse:
    """The provider's answer, its usage counted when the upstream reported none."""
    response = await provider.complete(request)
    if not response.usage.total_tokens:
        response.usage = call.counted(0, _output_chars(response))
    return response


def _output_chars(response: ChatResponse) -> int:
    total = 0
    for content in [response.content, *(choice.content for choice in response.extra_choices)]:
        for part in content:
            if isinstance(part, TextPart | ThinkingPart):
                total += len(part.text)
            elif isinstance(part, ToolUsePart):
                total += len(part.arguments) + len(part.name)
    return total


def gateway(services: Services) -> ChatGateway:
    """The process's chat gateway, created on first use and closed with the services."""
    found = services.extensions.get("chat")
    if found is None:
        found = services.extensions["chat"] = ChatGateway(services)
    assert isinstance(found, ChatGateway)
    return found
