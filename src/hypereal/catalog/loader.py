"""Load the built-in catalog, merge an operator's file over it, validate the result; resolve ids.

A model id a client sends resolves, in this order, to the model of that id, to the model
of which it is an alias, or to a model of the most specific chat family whose pattern it
matches; anything else is an `UnknownModel` (404) naming the closest ids of the category.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from hypereal.catalog.providers import ProviderConfig
from hypereal.catalog.schema import ID_MAX_LENGTH, ID_PATTERN, CatalogFile, Family, ModelSpec
from hypereal.errors import UnknownModel

BUILTIN = Path(__file__).parent / "models.yaml"
FAMILY_MODELS_REMEMBERED = 1024
"""Family models kept built, per process: resolving one is on every chat call's path."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ID = re.compile(ID_PATTERN)
_PROVIDER: TypeAdapter[ProviderConfig] = TypeAdapter(ProviderConfig)
_PROVIDER_TYPES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(ProviderConfig)[0])
}


class CatalogError(ValueError):
    """A catalog entry that cannot be served; the message names the entry and the field."""


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]
    providers: dict[str, ProviderConfig]
    aliases: dict[str, ModelSpec] = field(default_factory=dict)
    """Alias → its model, with the routes an alias is sent to."""
    families: tuple[Family, ...] = ()
    """Most specific first."""
    _family_models: dict[str, ModelSpec] = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, model_id: str, categories: Iterable[str] | None = None) -> ModelSpec:
        """The model to serve for `model_id` in one of `categories` (any when None)."""
        allowed = tuple(categories) if categories is not None else None
        spec = self.models.get(model_id) or self.aliases.get(model_id)
        if spec is None and (allowed is None or "llm" in allowed):
            spec = self._family_model(model_id)
        if spec is None or (allowed is not None and spec.category not in allowed):
            raise UnknownModel(model_id, allowed[0] if allowed else None, self.closest(model_id, allowed))
        return spec

    def closest(self, model_id: str, categories: tuple[str, ...] | None) -> list[str]:
        """Up to three ids or aliases of `categories` that look like `model_id`."""
        known = [
            name
            for spec in self.models.values()
            if categories is None or spec.category in categories
            for name in (spec.id, *spec.aliases)
        ]
        return difflib.get_close_matches(model_id, known, n=3, cutoff=0.6)

    def in_category(self, category: str | None) -> list[ModelSpec]:
        return [m for m in self.models.values() if category is None or m.category == category]

    def _family_model(self, model_id: str) -> ModelSpec | None:
        spec = self._family_models.get(model_id)
        if spec is not None:
            return spec
        if len(model_id) > ID_MAX_LENGTH or not _ID.match(model_id):
            return None
        family = next((f for f in self.families if fnmatchcase(model_id, f.pattern)), None)
        if family is None:
            return None
        while len(self._family_models) >= FAMILY_MODELS_REMEMBERED:
            del self._family_models[next(iter(self._family_models))]  # the oldest
        spec = self._family_models[model_id] = family.model(model_id)
        return spec


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
        raise CatalogError(f"Catalog {path} must be a mapping with `providers`, `models` and `families`")
    return data


def _file(path: Path) -> CatalogFile:
    try:
        return CatalogFile.model_validate(_read(path))
    except ValidationError as exc:
        raise CatalogError(f"Catalog {path}: {_describe(exc, CatalogFile)}") from None


def _describe(exc: ValidationError, root: type[BaseModel] | None = None) -> str:
    """Each error as `field.path: what is wrong`; a misspelt field or provider type with the
    names it could have meant."""
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        model = root
        if root is None and loc and loc[0] in _PROVIDER_TYPES:  # a provider entry: the tag leads
            model = _PROVIDER_TYPES[loc.pop(0)]
        if err["type"] == "union_tag_not_found":
            problems.append(f"type: missing{_did_you_mean('', list(_PROVIDER_TYPES))}")
        elif err["type"] == "union_tag_invalid":
            given = str((err.get("ctx") or {}).get("tag", ""))
            problems.append(f"type: unknown provider type '{given}'{_did_you_mean(given, list(_PROVIDER_TYPES))}")
        elif err["type"] == "extra_forbidden" and model is not None:
            known = _fields_at(model, loc[:-1])
            problems.append(f"{'.'.join(loc)}: unknown field{_did_you_mean(loc[-1], known)}")
        else:
            where, said = ".".join(loc), str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {said}" if where else said)
    return "; ".join(problems)


def _did_you_mean(given: str, known: list[str]) -> str:
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{guess}; expected one of: {', '.join(sorted(known))}"


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the model found at `path` under `model` (list indexes skipped)."""
    for part in path:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = [arg for arg in (field.annotation, *get_args(field.annotation)) if _is_model(arg)]
        if not inner:
            return []
        model = inner[0]
    return list(model.model_fields)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _providers(files: list[tuple[Path, CatalogFile]]) -> dict[str, ProviderConfig]:
    """The provider entries of every file, a later one replacing an earlier one of its name."""
    providers: dict[str, ProviderConfig] = {}
    for source, parsed in files:
        for name, entry in parsed.providers.items():
            try:
                providers[name] = _PROVIDER.validate_python(entry)
            except ValidationError as exc:
                raise CatalogError(f"Catalog {source}: provider '{name}': {_describe(exc)}") from None
    return providers


def _merged(
    files: list[tuple[Path, list[dict[str, Any]]]], key: str, kind: str, builtin: Path
) -> dict[str, dict[str, Any]]:
    """Entries by `key`, later files merged over earlier ones field by field."""
    merged: dict[str, dict[str, Any]] = {}
    for source, entries in files:
        for entry in entries:
            name = entry.get(key)
            if not isinstance(name, str):
                raise CatalogError(f"Catalog {source}: a {kind} entry has no `{key}`: {entry!r:.120}")
            if source == builtin and name in merged:
                raise CatalogError(f"Catalog {source}: {kind} '{name}' is defined twice")
            merged[name] = {**merged.get(name, {}), **entry}
    return merged


def load_catalog(extra_path: Path | None = None, builtin: Path = BUILTIN) -> Catalog:
    """The built-in catalog with the operator's file merged over it.

    Operator entries with a known id (a family: a known pattern) are merged field by field
    (so a file may override only the `routes` or `pricing` of a model); new ones are added;
    providers are replaced by name.
    """
    files = [(builtin, _file(builtin))] + ([(extra_path, _file(extra_path))] if extra_path else [])
    providers = _providers(files)
    raw_models = _merged([(path, parsed.models) for path, parsed in files], "id", "model", builtin)
    raw_families = _merged([(path, parsed.families) for path, parsed in files], "pattern", "family", builtin)

    models: dict[str, ModelSpec] = {}
    for model_id, entry in raw_models.items():
        try:
            spec = ModelSpec.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(f"Catalog model '{model_id}': {_describe(exc, ModelSpec)}") from None
        for index, route in enumerate(spec.routes):
            problem = _serves(providers, route.provider, "chat" if spec.is_llm else "media")
            if problem:
                raise CatalogError(f"Catalog model '{model_id}': routes.{index}.provider: {problem}")
        if spec.is_llm and (spec.pricing.input_per_mtok == 0 and spec.pricing.output_per_mtok == 0):
            raise CatalogError(f"Catalog model '{model_id}': pricing: an llm needs per-token prices")
        models[model_id] = spec
    families = _families(raw_families, providers)
    return Catalog(models=models, providers=providers, aliases=_aliases(models), families=families)


def _serves(providers: dict[str, ProviderConfig], name: str, kind: str) -> str | None:
    """Why provider `name` cannot serve a `kind` route; None when it can."""
    config = providers.get(name)
    if config is None:
        return f"unknown provider '{name}'{_did_you_mean(name, list(providers))}"
    if config.kind != kind:
        return f"provider '{name}' of type {config.type} serves {config.kind}, not {kind}"
    return None


def _aliases(models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    aliases: dict[str, ModelSpec] = {}
    for spec in models.values():
        for index, alias in enumerate(spec.aliases):
            where = f"Catalog model '{spec.id}': aliases.{index}"
            if alias in models:
                raise CatalogError(f"{where}: '{alias}' is the id of a model")
            if alias in aliases:
                raise CatalogError(f"{where}: '{alias}' is already an alias of '{aliases[alias].id}'")
            routes = [r.model_copy(update={"model": alias}) if r.model == spec.id else r for r in spec.routes]
            aliases[alias] = spec if routes == spec.routes else spec.model_copy(update={"routes": routes})
    return aliases


def _families(raw: dict[str, dict[str, Any]], providers: dict[str, ProviderConfig]) -> tuple[Family, ...]:
    families: list[Family] = []
    for pattern, entry in raw.items():
        try:
            family = Family.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(f"Catalog family '{pattern}': {_describe(exc, Family)}") from None
        problem = _serves(providers, family.provider, "chat")
        if problem:
            raise CatalogError(f"Catalog family '{pattern}': provider: {problem}")
        families.append(family)
    # Stable: of equally specific patterns, the one declared first wins.
    return tuple(sorted(families, key=lambda family: -family.specificity))
