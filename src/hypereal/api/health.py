"""Liveness, readiness and metrics (served at the root, not under /v1)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hypereal.api.deps import ServicesDep
from hypereal.api.openapi import PUBLIC, errors
from hypereal.api.responses import JsonResponse
from hypereal.api.schemas import Health
from hypereal.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, openapi_extra=PUBLIC)
async def healthz() -> JsonResponse:
    """The process is alive."""
    return JsonResponse({"status": "ok"})


@router.get("/readyz", response_model=Health, responses=errors(503), openapi_extra=PUBLIC)
async def readyz(services: ServicesDep) -> JsonResponse:
    """The database answers."""
    try:
        await services.db.ping()
    except Exception as exc:
        raise Unavailable("Database unreachable") from exc
    return JsonResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
