"""Built-in offline models: classical algorithms that run on the CPU, no weights, no network.

Each module here exports `MODELS: dict[str, LocalModel]`, keyed by the model id used as the
route's `upstream_model` in the catalog (`local-image`, `local-tts`, ...). The `local`
provider (provider.py) serves them all through the common media provider interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hypereal.providers.base import InputFetcher, MediaRequest, Result

LocalModel = Callable[[MediaRequest, InputFetcher], Awaitable[Result]]
"""Runs one request to completion. CPU-heavy work goes to a thread (`asyncio.to_thread`)
so the event loop stays free; broken input raises `hypereal.errors.BadRequest`."""
