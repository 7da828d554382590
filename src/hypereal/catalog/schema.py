"""The catalog's typed shape: models, their parameters, prices and routes; chat model families.
Provider entries are typed in `hypereal.catalog.providers`.

Unknown keys are rejected everywhere, so a misspelt field in an operator's file stops the
server with the entry and field named instead of being ignored.

A model's `aliases` are other names clients send for it (a vendor's dated snapshot, a
`-latest` name): the same model at the same prices, except that a route sending the
model's own id upstream sends the alias instead, so a pinned snapshot stays pinned. A
`Family` is a pattern of chat model ids (`claude-*`) that one provider serves at a
declared price, so that an id the catalog does not list yet reaches its vendor as the
client sent it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from hypereal.catalog.providers import Strict

Category = Literal["llm", "image", "image-edit", "video", "audio", "3d"]
ParamType = Literal["string", "integer", "number", "boolean", "image", "images", "audio", "array", "object"]
Mode = Literal["auto", "fast"]

MEDIA_CATEGORIES: tuple[Category, ...] = ("image", "image-edit", "video", "audio", "3d")
URL_TYPES = frozenset({"image", "images", "audio"})
ID_PATTERN = r"^[a-z0-9][a-z0-9._\-]*$"
ID_MAX_LENGTH = 120
ModelId = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


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
    pricing: Pricing | None = None
    """What a call costs on this route, when it differs from the model's (another provider's rates)."""


class ModelSpec(Strict):
    id: ModelId
    aliases: tuple[ModelId, ...] = ()
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


class Family(Strict):
    """Chat models whose id matches `pattern` (shell-style: `*`, `?`, `[0-9]`), served by `provider`."""

    pattern: str = Field(min_length=2, max_length=ID_MAX_LENGTH, pattern=r"^[a-z0-9][a-z0-9._\-*?\[\]]*$")
    provider: str
    description: str = ""
    pricing: Pricing
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _is_a_pattern(self) -> Family:
        if not any(wildcard in self.pattern for wildcard in "*?["):
            raise ValueError("pattern has no wildcard; list a single model under `models` instead")
        if self.pricing.input_per_mtok == 0 and self.pricing.output_per_mtok == 0:
            raise ValueError("pricing: a family needs per-token prices")
        return self

    @property
    def specificity(self) -> int:
        """How many characters the pattern fixes: of two families that match, the one fixing more wins."""
        return len(re.sub(r"\[[^\]]*\]|[*?]", "", self.pattern))

    def model(self, model_id: str) -> ModelSpec:
        """The family's model `model_id`, whose upstream receives the id the client sent."""
        return ModelSpec(
            id=model_id,
            category="llm",
            name=model_id,
            description=self.description,
            pricing=self.pricing,
            routes=[Route(provider=self.provider, model=model_id)],
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
        )


class CatalogFile(Strict):
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Checked one by one (`hypereal.catalog.providers`), so that an error names its entry."""
    models: list[dict[str, Any]] = Field(default_factory=list)
    families: list[dict[str, Any]] = Field(default_factory=list)
