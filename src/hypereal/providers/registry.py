"""The closed set of provider types: each catalog `type` names its implementation
(`hypereal.catalog.providers`), built here from its typed configuration.

Implementations are imported on first use, so that a server that never touches the local
models does not pay for importing OpenCV and PyAV at start.
"""

from __future__ import annotations

import importlib

from hypereal.catalog.providers import ProviderBase
from hypereal.providers.base import Provider


def build(config: ProviderBase) -> Provider:
    """The provider serving `config`, a chat or a media one as its type's `kind` says."""
    module_name, _, class_name = config.implementation.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{config.implementation} is not a provider")
    return cls(config)
