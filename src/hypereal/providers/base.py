"""The interface every media provider implements, upstream queues and local models alike.

The shape follows real upstream queues (fal, Replicate, WaveSpeed): `submit` hands the
work over and returns either a `Handle` (persisted by the job engine before anything else,
so that recovery resumes polling instead of submitting twice) or, on the fast path, a
finished `Result`. `poll` is asked again until it stops answering `Pending`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from hypereal.catalog.providers import ProviderBase


@dataclass(frozen=True, slots=True)
class InputFile:
    """Bytes of an input URL, fetched through the SSRF guard."""

    data: bytes
    content_type: str
    url: str = ""


class InputFetcher(Protocol):
    """Fetches a user's input URL (http(s) or data:) under the SSRF guard and size limits."""

    async def __call__(self, url: str, *, kind: str) -> InputFile: ...


@dataclass(frozen=True, slots=True)
class MediaRequest:
    job_id: str
    model: str
    """Catalog id of the model asked for."""
    upstream_model: str
    """The route's model id at the provider."""
    category: str
    params: dict[str, Any]
    """Validated input: the catalog's parameters with defaults filled in."""
    mode: str = "auto"


@dataclass(frozen=True, slots=True)
class Output:
    """One produced file. `data` for files we store; `url` for files an upstream hosts."""

    content_type: str
    extension: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    outputs: list[Output]
    extra: dict[str, Any] = field(default_factory=dict)
    """Structured answers beside files, e.g. a transcript: {"text", "duration", "segments"}."""


@dataclass(frozen=True, slots=True)
class Handle:
    """What an upstream gave back on submit; enough to poll or cancel it after a restart."""

    request_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pending:
    stage: str = "running"
    retry_after: float = 2.0


class Provider:
    """What chat and media providers share: built from the typed configuration of one
    deployment of a catalog entry (`hypereal.providers.registry.build`)."""

    type: ClassVar[str]

    def __init__(self, config: ProviderBase) -> None:
        self.config = config

    async def close(self) -> None:
        return None


class MediaProvider(Provider, abc.ABC):
    """A media provider type, chosen by the `type` of its catalog entry."""

    @abc.abstractmethod
    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Handle | Result:
        """Hand the work over. Raise BadRequest subclasses for input the provider rejects."""

    async def poll(self, handle: Handle) -> Pending | Result:
        raise NotImplementedError(f"{self.type} answers on submit and is never polled")

    async def cancel(self, handle: Handle) -> bool:
        """Ask the upstream to stop; True when it accepted."""
        return False

    def available(self) -> bool:
        """Whether this provider is configured well enough to serve requests now."""
        return True
