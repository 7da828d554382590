"""The caller's own account: balance and ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hypereal.api import schemas
from hypereal.api.deps import CurrentKey, ServicesDep
from hypereal.api.openapi import errors
from hypereal.api.responses import JsonResponse
from hypereal.api.usage import LedgerFilterDep
from hypereal.bounds import INT64_MAX
from hypereal.store import usage

router = APIRouter(prefix="/account", tags=["account"], responses=errors(401, 429))


@router.get("", response_model=schemas.AccountSummary)
async def account(principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """The account of the calling key, with its balance in credits."""
    found = await services.accounts.get(principal.account_id)
    return JsonResponse({"id": found.id, "name": found.name, "balance": found.public()["balance"]})


@router.get("/ledger", response_model=schemas.LedgerPage, responses=errors(400))
async def account_ledger(
    principal: CurrentKey,
    services: ServicesDep,
    where: LedgerFilterDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Cursor: entries older than this id")] = None,
) -> JsonResponse:
    """Every credit movement, newest first, optionally filtered; page with `before=<next_cursor>`."""
    async with services.db.read() as conn:
        entries = await usage.search(conn, principal.account_id, where, limit + 1, before)
    more = len(entries) > limit
    entries = entries[:limit]
    return JsonResponse(
        {
            "data": [entry.public() for entry in entries],
            "has_more": more,
            "next_cursor": entries[-1].id if more and entries else None,
        }
    )


@router.get("/webhook-secret", response_model=schemas.WebhookSecret)
async def webhook_secret(principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """The secret that signs this account's webhooks (Standard Webhooks)."""
    found = await services.accounts.get(principal.account_id)
    return JsonResponse({"secret": found.webhook_secret})


@router.post("/webhook-secret/rotate", response_model=schemas.WebhookSecret)
async def rotate_webhook_secret(principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """A new secret; webhooks are signed with both old and new until the next rotation."""
    secret = await services.accounts.rotate_webhook_secret(principal.account_id)
    return JsonResponse({"secret": secret})
