"""Helpers shared by the upstream adapters' tests."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from hypereal.catalog.providers import ProviderConfig
from hypereal.providers.base import Handle, InputFile, MediaProvider, MediaRequest, Pending, Result

IMAGE = "https://example.com/cat.png"
LAST = "https://example.com/dog.png"


async def no_fetch(url: str, *, kind: str) -> InputFile:
    raise AssertionError("upstream adapters pass URLs on; they never fetch inputs")


def request(model: str, params: dict[str, Any], category: str = "video", catalog_id: str = "m") -> MediaRequest:
    return MediaRequest(job_id="job_1", model=catalog_id, upstream_model=model, category=category, params=params)


async def run_to_end(provider: MediaProvider, handle: Handle, limit: int = 10) -> tuple[list[Pending], Result]:
    seen: list[Pending] = []
    for _ in range(limit):
        outcome = await provider.poll(handle)
        if isinstance(outcome, Result):
            return seen, outcome
        seen.append(outcome)
    raise AssertionError(f"no result after {limit} polls: {seen}")


def config(kind: str, env: str, base_url: str, **more: Any) -> Any:
    """The typed configuration of a catalog entry of type `kind`."""
    entry = {"type": kind, "api_key_env": env, "base_url": base_url, **more}
    return TypeAdapter(ProviderConfig).validate_python(entry)
