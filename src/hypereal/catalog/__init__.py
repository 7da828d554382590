"""The model catalog: one YAML data file, typed and validated at start-up."""

from hypereal.catalog.loader import Catalog, CatalogError, load_catalog
from hypereal.catalog.providers import ProviderConfig
from hypereal.catalog.schema import ModelSpec, ParamSpec, Pricing, Route

__all__ = ["Catalog", "CatalogError", "ModelSpec", "ParamSpec", "Pricing", "ProviderConfig", "Route", "load_catalog"]
