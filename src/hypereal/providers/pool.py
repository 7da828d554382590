"""The provider instances of one process: one per deployment of each catalog entry.

Built on first use from the deployment's typed configuration (`ProviderBase.resolved`),
so each holds its own connections and credential, and closed once at shutdown. A chat
provider is named after its catalog entry, which answers say they were served by.
"""

from __future__ import annotations

import asyncio
import logging

from hypereal.catalog import Catalog
from hypereal.catalog.providers import ProviderBase
from hypereal.providers.base import MediaProvider, Provider
from hypereal.providers.chat import ChatProvider
from hypereal.providers.registry import build

log = logging.getLogger(__name__)

DEFAULT_DEPLOYMENT = "default"


class ProviderPool:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._instances: dict[tuple[str, str], Provider] = {}
        self._deployments: dict[str, list[ProviderBase]] = {}

    def deployments(self, name: str) -> list[ProviderBase]:
        """The configuration of each deployment of entry `name`, in catalog order."""
        found = self._deployments.get(name)
        if found is None:
            found = self._deployments[name] = self.catalog.providers[name].resolved()
        return found

    def chat(self, name: str, deployment: str = DEFAULT_DEPLOYMENT) -> ChatProvider:
        provider = self._instances.get((name, deployment)) or self._build(name, deployment)
        if not isinstance(provider, ChatProvider):
            raise TypeError(f"provider '{name}' does not serve chat")
        return provider

    def media(self, name: str, deployment: str = DEFAULT_DEPLOYMENT) -> MediaProvider:
        """The media provider of entry `name`; an unknown deployment (a job from before the
        entry listed deployments) is its first."""
        provider = self._instances.get((name, deployment)) or self._build(name, deployment)
        if not isinstance(provider, MediaProvider):
            raise TypeError(f"provider '{name}' does not serve media")
        return provider

    def _build(self, name: str, deployment: str) -> Provider:
        configs = self.deployments(name)
        config = next((c for c in configs if c.deployment.name == deployment), configs[0])
        provider = build(config)
        if isinstance(provider, ChatProvider):
            provider.name = name
        self._instances[(name, deployment)] = provider
        return provider

    async def close(self) -> None:
        instances, self._instances = list(self._instances.items()), {}
        results = await asyncio.gather(*(provider.close() for _, provider in instances), return_exceptions=True)
        for ((name, deployment), _), result in zip(instances, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("closing provider %s (%s) failed: %s", name, deployment, result)
