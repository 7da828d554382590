"""The model list, with prices and whether a configured provider can serve each model now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hypereal.api import schemas
from hypereal.api.deps import ServicesDep
from hypereal.api.openapi import PUBLIC, errors
from hypereal.api.responses import JsonResponse
from hypereal.catalog import Catalog, ModelSpec
from hypereal.catalog.schema import Category
from hypereal.providers.registry import can_serve

router = APIRouter(tags=["models"])


def available(catalog: Catalog, spec: ModelSpec) -> bool:
    return any(can_serve(catalog.providers[route.provider]) for route in spec.routes)


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
    return {"object": "list", "data": [describe(catalog, spec) for spec in catalog.in_category(category)]}


@router.get("/models", response_model=schemas.ModelList, responses=errors(400), openapi_extra=PUBLIC)
async def list_models(
    services: ServicesDep, category: Annotated[Category | None, Query(description="Filter by category")] = None
) -> JsonResponse:
    """Every model with its parameters, pricing and current availability."""
    return JsonResponse(model_list(services.catalog, category))


@router.get(
    "/models/{model_id}",
    response_model=schemas.Model,
    responses={400: {**errors(400)[400], "description": "No model has this id."}},
    openapi_extra=PUBLIC,
)
async def get_model(model_id: str, services: ServicesDep) -> JsonResponse:
    """One model."""
    return JsonResponse(describe(services.catalog, services.catalog.get(model_id)))
