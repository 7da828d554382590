"""The model list, with prices and whether a configured provider can serve each model now.

One path, three shapes, chosen by who asks:

    Codex CLI (`?client_version=`)          `{"models": [...]}`, the model metadata it reads
                                            (`hypereal.api.codex_models`)
    Anthropic clients (`anthropic-version`) Anthropic's page of chat models: `data`, `has_more`,
                                            `first_id`, `last_id`, paged by `limit`, `after_id`
                                            or `before_id`
    everyone else                           OpenAI's list, each model with its parameters,
                                            prices and availability, and the chat families

`/models/{id}` resolves the id as chat calls do (an alias, a family member).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from hypereal.api import schemas
from hypereal.api.codex_models import codex_models
from hypereal.api.deps import ServicesDep
from hypereal.api.openapi import PUBLIC, errors
from hypereal.api.responses import JsonResponse
from hypereal.catalog import Catalog, ModelSpec
from hypereal.catalog.schema import Category
from hypereal.errors import ValidationFailed

router = APIRouter(tags=["models"])
CREATED_AT = "1970-01-01T00:00:00Z"
"""The catalog keeps no release dates; Anthropic's list wants one, OpenAI's `created` is 0."""


def available(catalog: Catalog, spec: ModelSpec) -> bool:
    return any(catalog.providers[route.provider].configured for route in spec.routes)


def describe(catalog: Catalog, spec: ModelSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": spec.id,
        "object": "model",
        "created": 0,
        "owned_by": catalog.providers[spec.routes[0].provider].type,
        "name": spec.name,
        "category": spec.category,
        "task": spec.task,
        "description": spec.description,
        "aliases": list(spec.aliases),
        "pricing": spec.pricing.model_dump(exclude_defaults=True),
        "available": available(catalog, spec),
    }
    if spec.is_llm:
        entry["context_window"] = spec.context_window
        entry["max_output_tokens"] = spec.max_output_tokens
    else:
        entry["params"] = {name: p.model_dump(exclude_none=True) for name, p in spec.params.items()}
    return entry


def model_list(catalog: Catalog, category: str | None) -> dict[str, Any]:
    data = [describe(catalog, spec) for spec in catalog.in_category(category)]
    listed: dict[str, Any] = {"object": "list", "data": data}
    if category in (None, "llm"):
        listed["families"] = [
            {
                "pattern": family.pattern,
                "owned_by": catalog.providers[family.provider].type,
                "description": family.description,
                "pricing": family.pricing.model_dump(exclude_defaults=True),
                "context_window": family.context_window,
                "max_output_tokens": family.max_output_tokens,
            }
            for family in catalog.families
        ]
    return listed


def anthropic_model(spec: ModelSpec) -> dict[str, Any]:
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.name,
        "created_at": CREATED_AT,
        "max_input_tokens": spec.context_window,
        "max_tokens": spec.max_output_tokens,
        "lifecycle": "active",
    }


def anthropic_page(models: list[ModelSpec], limit: int, after_id: str | None, before_id: str | None) -> dict[str, Any]:
    """One page of Anthropic's list: `limit` models after `after_id`, or just before `before_id`."""
    if after_id is not None and before_id is not None:
        raise ValidationFailed("Give after_id or before_id, not both", field="before_id")
    ids = [spec.id for spec in models]
    for name, cursor in (("after_id", after_id), ("before_id", before_id)):
        if cursor is not None and cursor not in ids:
            raise ValidationFailed(f"{name} '{cursor}' is not the id of a listed model", field=name)
    if before_id is not None:
        end = ids.index(before_id)
        start = max(0, end - limit)
        has_more = start > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        end = start + limit
        has_more = end < len(ids)
    page = [anthropic_model(spec) for spec in models[start:end]]
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _anthropic_client(request: Request) -> bool:
    return "anthropic-version" in request.headers


@router.get(
    "/models",
    response_model=schemas.ModelList | schemas.AnthropicModelPage | schemas.CodexModelList,
    responses=errors(400),
    openapi_extra=PUBLIC,
)
async def list_models(
    request: Request,
    services: ServicesDep,
    category: Annotated[Category | None, Query(description="Filter by category")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Models per page, for Anthropic clients")] = 20,
    after_id: Annotated[str | None, Query(description="Anthropic clients: the page after this model")] = None,
    before_id: Annotated[str | None, Query(description="Anthropic clients: the page before this model")] = None,
    client_version: Annotated[str | None, Query(description="Codex CLI's version: answer with its metadata")] = None,
) -> JsonResponse:
    """Every model with its parameters, pricing and current availability (Anthropic's or Codex's
    shape to those clients)."""
    if client_version is not None:
        return JsonResponse(codex_models(services.catalog))
    if _anthropic_client(request):
        return JsonResponse(anthropic_page(services.catalog.in_category("llm"), limit, after_id, before_id))
    return JsonResponse(model_list(services.catalog, category))


@router.get(
    "/models/{model_id}",
    response_model=schemas.Model | schemas.AnthropicModel,
    responses={404: {**errors(404)[404], "description": "No model has this id, alias or family."}},
    openapi_extra=PUBLIC,
)
async def get_model(model_id: str, request: Request, services: ServicesDep) -> JsonResponse:
    """One model, by its id, an alias or as a member of a chat family (Anthropic's shape to
    Anthropic clients)."""
    spec = services.catalog.resolve(model_id)
    if _anthropic_client(request):
        return JsonResponse(anthropic_model(spec))
    return JsonResponse(describe(services.catalog, spec))
