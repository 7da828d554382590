"""The operator's API: accounts, keys, credits. Bearer HYPEREAL_ADMIN_KEY only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from hypereal.api import schemas
from hypereal.api.deps import AdminAccess, ServicesDep, parsed
from hypereal.api.openapi import errors, json_body
from hypereal.api.responses import JsonResponse
from hypereal.billing import MINIMUM_TOP_UP
from hypereal.bounds import MAX_PAGE_OFFSET, MAX_RATE_LIMIT_PER_HOUR, MAX_TOP_UP_CREDITS
from hypereal.units import to_credits

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAccess], responses=errors(401, 403))


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=200)
    credits: StrictInt = Field(default=0, ge=0, le=MAX_TOP_UP_CREDITS)


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr | None = Field(default=None, max_length=200)
    rate_limit_per_hour: StrictInt | None = Field(default=None, ge=1, le=MAX_RATE_LIMIT_PER_HOUR)


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The minimum is checked by Billing.top_up, whose message names it; documented here.
    amount: StrictInt = Field(
        le=MAX_TOP_UP_CREDITS,
        description="Credits to add, at least 200.",
        json_schema_extra={"minimum": MINIMUM_TOP_UP},
    )


@router.post(
    "/accounts",
    status_code=201,
    response_model=schemas.AccountSummary,
    responses=errors(400, 413),
    openapi_extra=json_body(NewAccount),
)
async def create_account(services: ServicesDep, body: Annotated[NewAccount, parsed(NewAccount)]) -> JsonResponse:
    """Create an account, optionally with starting credits."""
    account = await services.accounts.create_account(body.name, body.credits)
    return JsonResponse({"id": account.id, "name": account.name, "balance": to_credits(account.balance)}, 201)


@router.get("/accounts", response_model=schemas.AccountList, responses=errors(400))
async def list_accounts(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET)] = 0,
) -> JsonResponse:
    """List accounts."""
    accounts = await services.accounts.list_accounts(limit, offset)
    return JsonResponse({"data": [account.public() for account in accounts]})


@router.get("/accounts/{account_id}", response_model=schemas.Account, responses=errors(404))
async def get_account(account_id: str, services: ServicesDep) -> JsonResponse:
    """One account with its balance."""
    return JsonResponse((await services.accounts.get(account_id)).public())


@router.post(
    "/accounts/{account_id}/keys",
    status_code=201,
    response_model=schemas.CreatedKey,
    responses=errors(400, 404, 413),
    openapi_extra=json_body(NewKey),
)
async def create_key(account_id: str, services: ServicesDep, body: Annotated[NewKey, parsed(NewKey)]) -> JsonResponse:
    """Create an API key. The response is the only time the key is shown."""
    record, raw = await services.accounts.create_key(account_id, body.name, body.rate_limit_per_hour)
    return JsonResponse(
        {
            "id": record.id,
            "key": raw,
            "prefix": record.prefix,
            "name": record.name,
            "rate_limit_per_hour": record.rate_limit_per_hour or services.settings.default_rate_limit_per_hour,
        },
        201,
    )


@router.get("/accounts/{account_id}/keys", response_model=schemas.KeyList, responses=errors(404))
async def list_keys(account_id: str, services: ServicesDep) -> JsonResponse:
    """An account's keys, without their secrets."""
    return JsonResponse({"data": [key.public() for key in await services.accounts.list_keys(account_id)]})


@router.post(
    "/accounts/{account_id}/credits",
    response_model=schemas.Balance,
    responses=errors(400, 404, 413),
    openapi_extra=json_body(TopUp),
)
async def add_credits(account_id: str, services: ServicesDep, body: Annotated[TopUp, parsed(TopUp)]) -> JsonResponse:
    """Top up an account (at least 200 credits)."""
    entry = await services.billing.top_up(account_id, body.amount)
    return JsonResponse({"balance": to_credits(entry.balance_after)})


@router.delete("/keys/{key_id}", status_code=204, responses=errors(404))
async def revoke_key(key_id: str, services: ServicesDep) -> Response:
    """Revoke a key; it is refused from the next request on, in every process."""
    await services.accounts.revoke_key(key_id)
    return Response(status_code=204)
