"""The catalog's typed shape: models, their parameters, prices and routes; provider instances.

Unknown keys are rejected everywhere, so a misspelt field in an operator's file stops the
server with the entry and field named instead of being ignored.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Category = Literal["llm", "image", "image-edit", "video", "audio", "3d"]
ParamType = Literal["string", "integer", "number", "boolean", "image", "images", "audio", "array", "object"]
Mode = Literal["auto", "fast"]

MEDIA_CATEGORIES: tuple[Category, ...] = ("image", "image-edit", "video", "audio", "3d")
URL_TYPES = frozenset({"image", "images", "audio"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(Strict):
    type: ParamType
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(default=None, ge=1)
    max_items: int | None = Field(default=None, ge=1)
    description: str | None = None

    @model_validator(mode="after")
    def _default_allowed(self) -> ParamSpec:
        if self.enum is not None and self.default is not None and self.default not in self.enum:
            raise ValueError(f"default {self.default!r} is not one of enum {self.enum!r}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        return self


class Pricing(Strict):
    """Credits (1 credit = $0.01). Media prices are whole credits; per-token prices may be fractions."""

    per_call: int = Field(default=0, ge=0)
    per_second: int = Field(default=0, ge=0)
    per_input_minute: int = Field(default=0, ge=0)
    input_per_mtok: float = Field(default=0, ge=0)
    output_per_mtok: float = Field(default=0, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    fast_surcharge_percent: int = Field(default=0, ge=0, le=1000)


class Route(Strict):
    provider: str
    model: str = Field(min_length=1)
    modes: tuple[Mode, ...] = ("auto", "fast")


class ProviderConfig(Strict):
    type: str
    api_key_env: str | None = None
    base_url: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)

    def api_key(self) -> str | None:
        """The credential, read from the environment at use time; never stored in the catalog."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def configured(self) -> bool:
        return self.api_key_env is None or bool(self.api_key())


class ModelSpec(Strict):
    id: str = Field(min_length=1, max_length=120, pattern=r"^[a-z0-9][a-z0-9._\-]*$")
    category: Category
    task: str | None = None
    name: str
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    pricing: Pricing = Field(default_factory=Pricing)
    routes: list[Route] = Field(min_length=1)
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)

    @property
    def is_llm(self) -> bool:
        return self.category == "llm"


class CatalogFile(Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: list[dict[str, Any]] = Field(default_factory=list)
