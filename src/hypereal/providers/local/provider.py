"""The `local` provider: serves every built-in model through the media provider interface."""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import ClassVar

from hypereal.catalog.providers import LocalConfig
from hypereal.errors import Unavailable
from hypereal.providers.base import InputFetcher, MediaProvider, MediaRequest, Result
from hypereal.providers.local import LocalModel

# Modules that export MODELS; each is imported on first use.
MODULES = ("imagegen", "imageedit", "video", "mesh3d", "speech", "voicematch", "transcribe")


def _load_models() -> dict[str, LocalModel]:
    models: dict[str, LocalModel] = {}
    for name in MODULES:
        qualified = f"hypereal.providers.local.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
            continue
        models.update(module.MODELS)
    return models


class LocalProvider(MediaProvider):
    type: ClassVar[str] = "local"

    def __init__(self, config: LocalConfig) -> None:
        super().__init__(config)
        self._models: dict[str, LocalModel] | None = None
        # The models are CPU-bound; running more at once than there are cores only adds latency.
        self._slots = asyncio.Semaphore(config.options.concurrency or os.cpu_count() or 1)

    def models(self) -> dict[str, LocalModel]:
        if self._models is None:
            self._models = _load_models()
        return self._models

    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Result:
        model = self.models().get(request.upstream_model)
        if model is None:
            raise Unavailable(f"The local model '{request.upstream_model}' is not part of this build")
        async with self._slots:
            return await model(request, fetch)
