"""Choosing who serves a request: the catalog's routes, filtered by mode and configuration.

`mode: "fast"` takes the routes marked fast (WaveSpeed direct, surcharge applies); when none
is configured, the request is served on an auto route without the surcharge. With
HYPEREAL_LOCAL_FALLBACK=true, a model none of whose upstreams is configured is served by the
built-in local model of the same kind (`stand_in`; chat models by `local-echo`), at that
model's price, and the answer says so: a job's `provider` and `servedBy`, a chat answer's
`x-hypereal-served-by` header and its ledger entry. Without it, such a model is refused with
`NotConfigured`, which names what to set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hypereal.catalog import Catalog, ModelSpec
from hypereal.errors import NotConfigured
from hypereal.providers.base import MediaProvider
from hypereal.providers.registry import build

log = logging.getLogger(__name__)

# (category, task) -> the built-in model that does the same kind of work.
LOCAL_FALLBACK: dict[tuple[str, str | None], str] = {
    ("image", "t2i"): "local-image",
    ("image", None): "local-image",
    ("image-edit", "edit"): "local-stylize",
    ("image-edit", None): "local-stylize",
    ("video", "t2v"): "local-video-t2v",
    ("video", "i2v"): "local-video-i2v",
    ("audio", "tts"): "local-tts",
    ("audio", "clone"): "local-voice-match",
    ("audio", "asr"): "local-asr",
    ("3d", "image-to-3d"): "local-3d-relief",
    ("3d", "multiview-to-3d"): "local-3d-multiview",
    ("llm", None): "local-echo",
}


@dataclass(frozen=True, slots=True)
class Choice:
    spec: ModelSpec
    """The model that will actually run (the local stand-in under fallback)."""
    provider: str
    upstream_model: str
    fast: bool
    fallback: bool = False


def choose(catalog: Catalog, spec: ModelSpec, mode: str, local_fallback: bool) -> list[Choice]:
    """Every route that can serve the request now, best first; raises when there is none."""
    usable = [r for r in spec.routes if catalog.providers[r.provider].configured]
    if mode == "fast":
        fast = [Choice(spec, r.provider, r.model, True) for r in usable if "fast" in r.modes]
        if fast:
            return fast
    auto = [Choice(spec, r.provider, r.model, False) for r in usable if "auto" in r.modes]
    if auto:
        return auto
    local = stand_in(catalog, spec) if local_fallback else None
    if local is not None:
        return [Choice(local, r.provider, r.model, False, fallback=True) for r in local.routes]
    raise not_configured(catalog, spec)


def stand_in(catalog: Catalog, spec: ModelSpec) -> ModelSpec | None:
    """The built-in model that does the work of `spec` under HYPEREAL_LOCAL_FALLBACK, if any."""
    local = LOCAL_FALLBACK.get((spec.category, spec.task)) or LOCAL_FALLBACK.get((spec.category, None))
    return catalog.models.get(local) if local is not None else None


def not_configured(catalog: Catalog, spec: ModelSpec) -> NotConfigured:
    """The refusal of a model none of whose providers is configured, saying what to set."""
    needed = sorted({catalog.providers[r.provider].api_key_env or r.provider for r in spec.routes})
    local = stand_in(catalog, spec)
    instead = f", or set HYPEREAL_LOCAL_FALLBACK=true to serve it with {local.id}" if local is not None else ""
    return NotConfigured(
        f"No provider is configured for '{spec.id}' on this server: set {' or '.join(needed)}{instead}.",
        model=spec.id,
    )


class ProviderPool:
    """One instance per catalog provider entry, built on first use, closed at shutdown."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._instances: dict[str, MediaProvider] = {}

    def get(self, name: str) -> MediaProvider:
        instance = self._instances.get(name)
        if instance is None:
            built = build(self.catalog.providers[name])
            if not isinstance(built, MediaProvider):
                raise TypeError(f"provider '{name}' does not serve media")
            instance = self._instances[name] = built
        return instance

    async def close(self) -> None:
        for name, instance in self._instances.items():
            try:
                await instance.close()
            except Exception:
                log.exception("closing provider %s failed", name)
        self._instances.clear()
