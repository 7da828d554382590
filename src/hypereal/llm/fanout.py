"""Chat Completions' `n` on upstreams that answer one choice per call: n calls at once, merged.

    complete   n one-choice answers → one ChatResponse: the first is the main choice, the
               others go to `extra_choices`, the usage is their sum
    stream     n one-choice streams → one stream of `ChoiceEvent`s ending with a bare
               `StreamEnd` that carries the summed usage (see `hypereal.llm.types`)

The calls succeed or fail together until every one of them has answered: a call that fails
before its first event cancels the others and its failure is the whole call's, so the
gateway refunds it or tries the next route as for a single call, and a client never gets a
partial set of choices. A call that fails after its first event fails mid-stream, as a
single call would: what the calls sent so far goes out, then the failure ends the merged
stream and the other calls with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from hypereal.errors import UpstreamError
from hypereal.llm import tokens
from hypereal.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ChoiceEvent,
    StreamEnd,
    StreamEvent,
    StreamStart,
    Usage,
)
from hypereal.providers.chat import ChatProvider

_T = TypeVar("_T")


def needed(provider: ChatProvider, model: str, choices: int, hosted_tools: bool = False) -> bool:
    """Whether `choices` choices of `model` (with hosted tools or not) take one call each at `provider`."""
    return choices > 1 and not provider.native_choices(model, hosted_tools)


async def complete(one: Callable[[ChatRequest], Awaitable[ChatResponse]], request: ChatRequest) -> ChatResponse:
    """`request.n` answers of `one` (called with n = 1) as one response."""
    single = replace(request, n=1)
    first, *others = await _all([one(single) for _ in range(request.n)])
    first.extra_choices = [Choice(other.content, other.stop_reason, other.stop_sequence) for other in others]
    first.usage = sum((other.usage for other in others), first.usage)
    return first


@dataclass(frozen=True, slots=True)
class _Ended:
    choice: int
    error: Exception | None = None


async def stream(
    open_stream: Callable[[ChatRequest], AsyncIterator[StreamEvent]], request: ChatRequest
) -> AsyncIterator[StreamEvent]:
    """`request.n` streams of `open_stream` (called with n = 1), merged as they arrive.

    Nothing is yielded until every stream has sent its first event. A stream whose start
    does not tell its prompt size gets the estimate, so that a stream cut later is billed
    for each prompt sent.
    """
    single = replace(request, n=1)
    prompt_estimate = tokens.request_tokens(single)
    queue: asyncio.Queue[ChoiceEvent | _Ended] = asyncio.Queue(maxsize=request.n)
    pumps = [asyncio.create_task(_pump(choice, open_stream(single), queue)) for choice in range(request.n)]
    held: list[ChoiceEvent] | None = []
    opened: set[int] = set()
    ends: dict[int, StreamEnd] = {}
    ended = 0
    try:
        while ended < request.n:
            item = await queue.get()
            if isinstance(item, _Ended):
                if item.error is not None:
                    if held is not None and item.choice in opened:  # mid-stream: what came so far goes out first
                        for earlier in held:
                            yield earlier
                    raise item.error
                if item.choice not in ends:
                    raise UpstreamError("Upstream stream ended before it finished")
                ended += 1
                continue
            event = item.event
            if isinstance(event, StreamStart) and not event.usage.input_tokens:
                event.usage = replace(event.usage, input_tokens=prompt_estimate)
            elif isinstance(event, StreamEnd):
                ends[item.choice] = event
            if held is None:
                yield item
                continue
            held.append(item)
            opened.add(item.choice)
            if len(opened) == request.n:
                for earlier in held:
                    yield earlier
                held = None
        usages = [end.usage for end in ends.values()]
        counted = any(usage is None or not usage.total_tokens for usage in usages)
        total = None if counted else sum((usage for usage in usages if usage is not None), Usage())
        yield StreamEnd(ends[0].stop_reason, total, ends[0].stop_sequence)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(choice: int, events: AsyncIterator[StreamEvent], queue: asyncio.Queue[ChoiceEvent | _Ended]) -> None:
    """One upstream stream into the shared queue; it is read and closed in this task only."""
    try:
        async for event in events:
            if isinstance(event, ChoiceEvent):  # an upstream that answers one choice sends no others
                raise UpstreamError("Upstream answered with several choices where one was asked for")
            await queue.put(ChoiceEvent(choice, event))
        await queue.put(_Ended(choice))
    except Exception as exc:
        await queue.put(_Ended(choice, exc))
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()


async def _all(calls: list[Awaitable[_T]]) -> list[_T]:
    """Every call's result, or the first failure once the other calls are cancelled."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
