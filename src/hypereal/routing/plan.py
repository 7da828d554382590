"""The plan of one request: the targets to try, in order. The only place that decides it.

A target is a catalog route (provider entry, upstream model) on one deployment of its
provider. For each request, chat or media, the plan is made of, in this order:

    the catalog    the model's routes, in the catalog's order, times each entry's
                   deployments
    mode           media `mode: "fast"` puts the routes marked fast first (surcharged),
                   the others after them without the surcharge; `auto` takes the routes
                   marked auto. Chat has no fast routes.
    configuration  only deployments whose key is set; when none is, with
                   HYPEREAL_LOCAL_FALLBACK=true, the routes of the model's built-in stand-in
                   (`stand_in`, at its price, and the answer says so), else `NotConfigured`
    preferences    the caller's `only`, `ignore`, `sort` (price, latency), `order` and
                   `allow_fallbacks` (`hypereal.routing.preferences`), within each mode group
    balance        the deployments of one route in a weighted random order
    health         targets whose circuit is open or cooling are left out; one request at a
                   time probes a half-open one (`hypereal.routing.health`); when all are
                   out, `UpstreamBusy` (503) with Retry-After until the first comes back

Planning reads memory only. The common case (no preferences, all healthy, one deployment
per route) returns a plan built once per model.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hypereal.catalog import Catalog, ModelSpec, Pricing, Route
from hypereal.catalog.providers import ProviderBase
from hypereal.catalog.schema import Mode
from hypereal.errors import NotConfigured, UpstreamBusy, ValidationFailed
from hypereal.providers.base import MediaProvider, Provider
from hypereal.providers.chat import ChatProvider
from hypereal.providers.pool import DEFAULT_DEPLOYMENT, ProviderPool
from hypereal.routing.health import Health
from hypereal.routing.preferences import Preferences

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Provider)
PLANS_REMEMBERED = 4096
"""Models whose targets are kept built, per process and kind (chat families add one per id)."""

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
class Target(Generic[P]):
    spec: ModelSpec
    """The model that runs: the one asked for, or its stand-in under fallback."""
    route: Route
    config: ProviderBase
    """The deployment's configuration."""
    provider: P
    fast: bool
    fallback: bool
    key: str
    """The route's name in health, metrics and logs: `provider/model`, or
    `provider@deployment/model` for an entry with several deployments."""

    @property
    def configured(self) -> bool:
        """Its key is set (or it needs none); read from the environment at each plan, as the
        configuration (`ProviderBase.configured`) is."""
        env = self.config.api_key_env
        return env is None or bool(os.environ.get(env))

    @property
    def name(self) -> str:
        """The catalog provider entry."""
        return self.route.provider

    @property
    def model(self) -> str:
        """The upstream's model id."""
        return self.route.model

    @property
    def deployment(self) -> str:
        return self.config.deployment.name or DEFAULT_DEPLOYMENT

    @property
    def label(self) -> str:
        """What answers say served them: `provider/model`."""
        return f"{self.route.provider}/{self.route.model}"

    @property
    def pricing(self) -> Pricing:
        """What a call costs on this route: the route's own prices, else the model's."""
        return self.route.pricing or self.spec.pricing


@dataclass(frozen=True, slots=True)
class Plan(Generic[P]):
    targets: list[Target[P]]
    """Never empty."""
    stand_in: ModelSpec | None = None
    """The local model serving the request instead (HYPEREAL_LOCAL_FALLBACK), when it does."""


@dataclass(slots=True)
class _Built(Generic[P]):
    spec: ModelSpec
    """Held so that the id of the model keying this entry is not reused while it lives."""
    targets: list[Target[P]]
    plan: Plan[P]
    balanced: bool
    """Some route has several deployments: each plan orders them anew."""
    stand_in: list[Target[P]] | None = field(default=None)


class Router:
    def __init__(self, catalog: Catalog, pool: ProviderPool, health: Health, *, local_fallback: bool) -> None:
        self.catalog = catalog
        self.pool = pool
        self.health = health
        self.local_fallback = local_fallback
        self._chat: dict[int, _Built[ChatProvider]] = {}
        self._media: dict[tuple[int, str], _Built[MediaProvider]] = {}
        self._random = random.Random()

    # ---- the plans ---------------------------------------------------------------------

    def chat(self, spec: ModelSpec, preferences: Preferences | None = None) -> Plan[ChatProvider]:
        built = self._chat.get(id(spec))
        if built is None or built.spec is not spec:
            built = _remember(self._chat, id(spec), self._build(spec, None, self.pool.chat))
        return self._plan(built, preferences, self.pool.chat)

    def media(self, spec: ModelSpec, mode: Mode, preferences: Preferences | None = None) -> Plan[MediaProvider]:
        built = self._media.get((id(spec), mode))
        if built is None or built.spec is not spec:
            built = _remember(self._media, (id(spec), mode), self._build(spec, mode, self.pool.media))
        return self._plan(built, preferences, self.pool.media)

    def configured(self, spec: ModelSpec) -> list[Target[ChatProvider]]:
        """The chat targets of `spec` whose key is set, health aside."""
        built = self._chat.get(id(spec))
        if built is None or built.spec is not spec:
            built = _remember(self._chat, id(spec), self._build(spec, None, self.pool.chat))
        return [target for target in built.targets if target.configured]

    def _plan(self, built: _Built[P], preferences: Preferences | None, make: Callable[[str, str], P]) -> Plan[P]:
        now = time.time()
        if preferences is None and not built.balanced:
            for target in built.targets:  # a loop, not all(): this is every chat call's path
                if not target.configured or not self.health.healthy(target.key, now):
                    break
            else:
                return built.plan
        targets = [target for target in built.targets if target.configured]
        stand_in: ModelSpec | None = None
        if not targets:
            local = stand_in_for(self.catalog, built.spec) if self.local_fallback else None
            if local is None:
                raise not_configured(self.catalog, built.spec)
            if built.stand_in is None:
                local_targets = self._build(local, None if local.is_llm else "auto", make).targets
                built.stand_in = [_fallback(target) for target in local_targets]
            targets, stand_in = [t for t in built.stand_in if t.configured], local
        if preferences is not None:
            targets = _preferred(targets, preferences, self.health, built.spec)
        if built.balanced:
            targets = self._balanced(targets)
        planned = [target for target in targets if self.health.usable(target.key, now)]
        if not planned:
            back = min(self.health.reopens_at(target.key) for target in targets)
            wait = max(1.0, back - now)
            raise UpstreamBusy(
                f"Every provider of '{built.spec.id}' is failing and left alone for now; retry in {wait:.0f} s",
                retry_after=wait,
                model=built.spec.id,
            )
        return Plan(planned, stand_in)

    def _build(self, spec: ModelSpec, mode: Mode | None, make: Callable[[str, str], P]) -> _Built[P]:
        """Every target of `spec` in catalog order, grouped by mode (`mode` None: chat)."""
        groups: list[tuple[Route, bool]]
        if mode is None:
            groups = [(route, False) for route in spec.routes]
        else:
            fast = [(route, True) for route in spec.routes if mode == "fast" and "fast" in route.modes]
            groups = fast + [(route, False) for route in spec.routes if "auto" in route.modes]
        targets: list[Target[P]] = []
        balanced = False
        for route, is_fast in groups:
            deployments = self.pool.deployments(route.provider)
            balanced = balanced or len(deployments) > 1
            for config in deployments:
                name = config.deployment.name or DEFAULT_DEPLOYMENT
                where = route.provider if len(deployments) == 1 else f"{route.provider}@{name}"
                provider = make(route.provider, name)
                targets.append(Target(spec, route, config, provider, is_fast, False, f"{where}/{route.model}"))
        if not targets:
            raise NotConfigured(f"No route of '{spec.id}' serves this mode on this server", model=spec.id)
        return _Built(spec, targets, Plan(targets), balanced)

    def _balanced(self, targets: list[Target[P]]) -> list[Target[P]]:
        """The deployments of each route in a weighted random order (heavier ones first more often)."""
        ordered: list[Target[P]] = []
        start = 0
        for index in range(1, len(targets) + 1):
            if index == len(targets) or targets[index].route is not targets[start].route:
                group = targets[start:index]
                if len(group) > 1:
                    group.sort(key=lambda t: self._random.random() ** (1.0 / t.config.deployment.weight), reverse=True)
                ordered.extend(group)
                start = index
        return ordered


_K = TypeVar("_K")


def _remember(cache: dict[_K, _Built[P]], key: _K, built: _Built[P]) -> _Built[P]:
    while len(cache) >= PLANS_REMEMBERED:
        del cache[next(iter(cache))]  # the oldest
    cache[key] = built
    return built


def _fallback(target: Target[P]) -> Target[P]:
    return Target(target.spec, target.route, target.config, target.provider, False, True, target.key)


def _preferred(targets: list[Target[P]], preferences: Preferences, health: Health, spec: ModelSpec) -> list[Target[P]]:
    """`targets` as the caller prefers them, each mode group on its own (fast routes first)."""
    kept = [
        target
        for target in targets
        if (not preferences.only or target.name in preferences.only) and target.name not in preferences.ignore
    ]
    if not kept:
        offered = ", ".join(dict.fromkeys(target.name for target in targets))
        raise ValidationFailed(
            f"No provider of '{spec.id}' is left by your provider preferences; it is served by {offered}",
            field="provider",
        )
    if preferences.sort == "price":
        kept.sort(key=lambda target: (not target.fast, _price_rank(target)))
    elif preferences.sort == "latency":
        kept.sort(key=lambda target: (not target.fast, _latency_rank(health.latency(target.key))))
    if preferences.order:
        rank = {name: index for index, name in enumerate(preferences.order)}
        beyond = len(rank)
        kept.sort(key=lambda target: (not target.fast, rank.get(target.name, beyond)))
        if not preferences.allow_fallbacks:
            kept = [target for target in kept if target.name in rank] or kept[:1]
    elif not preferences.allow_fallbacks:
        kept = [target for target in kept if target.name == kept[0].name]
    return kept


def _price_rank(target: Target[P]) -> float:
    """A comparable price: per-token prices for chat, a five-second call for media."""
    pricing = target.pricing
    surcharge = 1 + pricing.fast_surcharge_percent / 100 if target.fast else 1
    per_call = pricing.per_call + 5 * pricing.per_second + pricing.per_input_minute
    return (pricing.input_per_mtok + pricing.output_per_mtok + per_call) * surcharge


def _latency_rank(latency: float | None) -> float:
    return latency if latency is not None else float("inf")


def stand_in_for(catalog: Catalog, spec: ModelSpec) -> ModelSpec | None:
    """The built-in model that does the work of `spec` under HYPEREAL_LOCAL_FALLBACK, if any."""
    local = LOCAL_FALLBACK.get((spec.category, spec.task)) or LOCAL_FALLBACK.get((spec.category, None))
    return catalog.models.get(local) if local is not None else None


def not_configured(catalog: Catalog, spec: ModelSpec) -> NotConfigured:
    """The refusal of a model none of whose providers is configured, saying what to set."""
    needed = sorted(
        {
            config.api_key_env or route.provider
            for route in spec.routes
            for config in catalog.providers[route.provider].resolved()
        }
    )
    local = stand_in_for(catalog, spec)
    instead = f", or set HYPEREAL_LOCAL_FALLBACK=true to serve it with {local.id}" if local is not None else ""
    return NotConfigured(
        f"No provider is configured for '{spec.id}' on this server: set {' or '.join(needed)}{instead}.",
        model=spec.id,
    )
