"""The operator's view of routing: each route's health as this process sees it, and each
key's default provider preferences. Admin key only."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from hypereal.api import schemas
from hypereal.api.deps import AdminAccess, ServicesDep
from hypereal.api.openapi import errors, json_body
from hypereal.api.responses import JsonResponse
from hypereal.errors import ValidationFailed
from hypereal.routing.health import RouteHealth
from hypereal.routing.preferences import parse

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAccess], responses=errors(401, 403))


@router.get("/routes", response_model=schemas.RouteList)
async def routes(services: ServicesDep) -> JsonResponse:
    """Every route this process has called: its circuit, recent errors, timeouts and latency."""
    now = time.time()
    return JsonResponse({"data": route_views(services.router.health, now)})


def route_views(routes: Iterable[RouteHealth], now: float) -> list[dict[str, Any]]:
    """Each route's state as the admin API and the console's system screen show it, by name."""
    return [route_view(entry, now) for entry in sorted(routes, key=lambda entry: entry.key)]


def route_view(entry: RouteHealth, now: float) -> dict[str, Any]:
    state = entry.state(now)
    return {
        "route": entry.key,
        "state": state,
        "reason": entry.reason or None,
        "reopens_in_seconds": round(entry.open_until - now, 1) if state == "open" else None,
        "times_opened": entry.opened,
        "failures_in_a_row": entry.failures,
        "calls": entry.requests,
        "errors": entry.errors,
        "timeouts": entry.timeouts,
        "recent_error_rate": round(entry.error_rate, 3),
        "latency_ms": round(entry.latency * 1000, 1) if entry.latency is not None else None,
        "last_error": entry.last_error or None,
    }


async def _json(request: Request) -> Any:
    """The body as any JSON value (null included), with our error shape for anything else."""
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ValidationFailed("Request body is not valid JSON") from None


ProviderBody = Annotated[Any, Depends(_json)]


@router.put(
    "/keys/{key_id}/provider",
    response_model=schemas.Key,
    responses=errors(400, 404, 413),
    openapi_extra=json_body(schemas.ProviderPreferences),
)
async def key_preferences(key_id: str, services: ServicesDep, body: ProviderBody) -> JsonResponse:
    """Set a key's default provider preferences (null clears them); a request's own replace them."""
    checked = parse(body, services.catalog.providers)
    record = await services.accounts.set_key_preferences(key_id, checked.public() if checked else None)
    return JsonResponse(record.public())
