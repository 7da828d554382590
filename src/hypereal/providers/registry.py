"""The closed set of provider types, selected by the `type` field of a catalog provider entry.

Implementations are imported on first use, so that a server that never touches the local
models does not pay for importing OpenCV and PyAV at start.
"""

from __future__ import annotations

import importlib
from typing import Any

from hypereal.catalog.schema import ProviderConfig

MEDIA_TYPES: dict[str, str] = {
    "local": "hypereal.providers.local.provider:LocalProvider",
    "scripted": "hypereal.providers.scripted:ScriptedProvider",
    "fal": "hypereal.providers.fal:FalProvider",
    "replicate": "hypereal.providers.replicate:ReplicateProvider",
    "wavespeed": "hypereal.providers.wavespeed:WaveSpeedProvider",
}
CHAT_TYPES: dict[str, str] = {
    "openai": "hypereal.providers.openai:OpenAIProvider",
    "anthropic": "hypereal.providers.anthropic:AnthropicProvider",
    "openai-compatible": "hypereal.providers.openai_compatible:OpenAICompatibleProvider",
    "local-echo": "hypereal.providers.echo:EchoProvider",
}


def implemented(provider_type: str) -> bool:
    return provider_type in MEDIA_TYPES or provider_type in CHAT_TYPES


def load_class(provider_type: str) -> Any:
    target = MEDIA_TYPES.get(provider_type) or CHAT_TYPES.get(provider_type)
    if target is None:
        raise KeyError(provider_type)
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def can_serve(config: ProviderConfig) -> bool:
    """Configured (credentials present) and of a type this build implements."""
    return implemented(config.type) and config.configured
