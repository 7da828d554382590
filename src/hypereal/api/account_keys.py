"""Self-service keys: a key lists, creates and revokes the keys of its own account.

A new key's hourly limit cannot exceed the calling key's, and an account holds at most
`MAX_ACTIVE_KEYS` active keys. Revoking the account's last active key, or the calling key
itself, needs `confirm=true`; without it the answer is 409 and nothing changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from hypereal.api.deps import CurrentKey, ServicesDep, parsed
from hypereal.api.openapi import errors, json_body
from hypereal.api.responses import JsonResponse
from hypereal.services import Services
from hypereal.store.accounts import KeyRecord

router = APIRouter(prefix="/account/keys", tags=["account"])


class NewOwnKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr | None = Field(default=None, max_length=200, description="A label; `default` when absent.")
    rate_limit_per_hour: StrictInt | None = Field(
        default=None, ge=1, description="At most the calling key's own limit, which it takes when absent."
    )


class KeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; the rest is never shown again.")
    rate_limit_per_hour: int = Field(description="The key's limit, or the server's default when it has none.")
    requests_this_hour: int = Field(description="Requests counted against the limit in the moving hour.")
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    current: bool = Field(description="True for the key that made this request.")


class CreatedOwnKey(KeyView):
    key: str = Field(description="The secret: shown in this answer only.")


class OwnKeyList(BaseModel):
    data: list[KeyView]


async def key_view(services: Services, record: KeyRecord, caller_key_id: str) -> dict[str, object]:
    """One key as the API and the console show it (`KeyView`)."""
    limit = record.rate_limit_per_hour or services.settings.default_rate_limit_per_hour
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "rate_limit_per_hour": limit,
        "requests_this_hour": await services.limiter.used(record.id, limit) if record.revoked_at is None else 0,
        "created_at": record.created_at,
        "last_used_at": services.keys.last_used(record.id, record.last_used_at),
        "revoked_at": record.revoked_at,
        "current": record.id == caller_key_id,
    }


async def key_views(
    services: Services, account_id: str, caller_key_id: str, include_revoked: bool = False
) -> list[dict[str, object]]:
    records = await services.accounts.list_keys(account_id)
    return [
        await key_view(services, record, caller_key_id)
        for record in records
        if include_revoked or record.revoked_at is None
    ]


@router.get("", responses={200: {"model": OwnKeyList}, **errors(400)})
async def list_own_keys(
    principal: CurrentKey,
    services: ServicesDep,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys")] = False,
) -> JsonResponse:
    """The keys of the calling key's account, without their secrets, oldest first."""
    return JsonResponse({"data": await key_views(services, principal.account_id, principal.key_id, include_revoked)})


@router.post(
    "",
    status_code=201,
    responses={201: {"model": CreatedOwnKey}, **errors(400, 409, 413)},
    openapi_extra=json_body(NewOwnKey),
)
async def create_own_key(
    principal: CurrentKey, services: ServicesDep, body: Annotated[NewOwnKey, parsed(NewOwnKey)]
) -> JsonResponse:
    """Create a key for this account. The answer is the only time its secret is shown."""
    record, raw = await services.accounts.create_own_key(
        principal, body.name, body.rate_limit_per_hour, services.settings.default_rate_limit_per_hour
    )
    return JsonResponse({**await key_view(services, record, principal.key_id), "key": raw}, status_code=201)


@router.delete(
    "/{key_id}",
    status_code=204,
    responses={
        204: {"description": "Revoked (or already revoked)"},
        # 409: the account's last active key, or the calling key, without `confirm=true`
        # (the error carries `confirm_required: true`).
        **errors(400, 404, 409),
    },
)
async def revoke_own_key(
    key_id: str,
    principal: CurrentKey,
    services: ServicesDep,
    confirm: Annotated[
        bool, Query(description="Required to revoke the account's last active key or the calling key")
    ] = False,
) -> Response:
    """Revoke a key of this account; it is refused from the next request on, in every process."""
    await services.accounts.revoke_own_key(principal.account_id, key_id, principal.key_id, confirm)
    return Response(status_code=204)
