"""Load the built-in catalog, merge an operator's file over it, validate the result."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hypereal.catalog.schema import CatalogFile, ModelSpec, ProviderConfig
from hypereal.errors import UnknownModel

BUILTIN = Path(__file__).parent / "models.yaml"

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
    """A catalog entry that cannot be served; the message names the entry and the field."""


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]
    providers: dict[str, ProviderConfig]

    def get(self, model_id: str, categories: Iterable[str] | None = None) -> ModelSpec:
        spec = self.models.get(model_id)
        allowed = tuple(categories) if categories is not None else None
        if spec is None or (allowed is not None and spec.category not in allowed):
            raise UnknownModel(model_id, allowed[0] if allowed else None)
        return spec

    def in_category(self, category: str | None) -> list[ModelSpec]:
        return [m for m in self.models.values() if category is None or m.category == category]


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = yaml.load(handle, Loader=_Loader)
    except OSError as exc:
        raise CatalogError(f"Cannot read catalog {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"Catalog {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(f"Catalog {path} must be a mapping with `providers` and `models`")
    return data


def _file(path: Path) -> CatalogFile:
    try:
        return CatalogFile.model_validate(_read(path))
    except ValidationError as exc:
        raise CatalogError(f"Catalog {path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())


def load_catalog(extra_path: Path | None = None, builtin: Path = BUILTIN) -> Catalog:
    """The built-in catalog with the operator's file merged over it.

    Operator entries with a known id are merged field by field (so a file may override only
    the `routes` or `pricing` of a model); new ids are added; providers are replaced by name.
    """
    base = _file(builtin)
    providers = dict(base.providers)
    raw_models: dict[str, dict[str, Any]] = {}
    for source, entries in [(builtin, base.models)] + ([(extra_path, _file(extra_path).models)] if extra_path else []):
        for entry in entries:
            model_id = entry.get("id")
            if not isinstance(model_id, str):
                raise CatalogError(f"Catalog {source}: a model entry has no `id`: {entry!r:.120}")
            if source == builtin and model_id in raw_models:
                raise CatalogError(f"Catalog {source}: model '{model_id}' is defined twice")
            raw_models[model_id] = {**raw_models.get(model_id, {}), **entry}
    if extra_path is not None:
        providers.update(_file(extra_path).providers)

    models: dict[str, ModelSpec] = {}
    for model_id, entry in raw_models.items():
        try:
            spec = ModelSpec.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(f"Catalog model '{model_id}': {_describe(exc)}") from None
        for index, route in enumerate(spec.routes):
            if route.provider not in providers:
                raise CatalogError(
                    f"Catalog model '{model_id}': routes.{index}.provider: unknown provider '{route.provider}'"
                )
        if spec.is_llm and (spec.pricing.input_per_mtok == 0 and spec.pricing.output_per_mtok == 0):
            raise CatalogError(f"Catalog model '{model_id}': pricing: an llm needs per-token prices")
        models[model_id] = spec
    return Catalog(models=models, providers=providers)
