"""The operator's screens, for a session opened with the admin key: accounts (search, create,
top up, keys and their limits, revoke) and the state of providers, queue, workers and webhooks.

They call the same services as the admin API (`api/admin.py`), so the rules are the same: a
top-up is at least `MINIMUM_TOP_UP` credits, a key's secret is shown once.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from hypereal.api.account_keys import key_views
from hypereal.api.routing import route_views
from hypereal.billing import MINIMUM_TOP_UP
from hypereal.errors import HyperealError, ValidationFailed
from hypereal.sessions import ConsoleSession
from hypereal.store import console as console_store
from hypereal.store import usage as usage_store
from hypereal.store.accounts import get_key
from hypereal.store.usage import LedgerFilter
from hypereal.web.pages import operator_form, operator_session, redirect, render, services_of
from hypereal.web.sign_in import page
from hypereal.web.traffic import traffic

router = APIRouter(include_in_schema=False)
ACCOUNTS_PAGE = 50
HOUR = 3600.0


@router.get("/admin")
@page
async def accounts(request: Request) -> Response:
    session = await operator_session(request)
    return await _accounts(request, session)


async def _accounts(request: Request, session: ConsoleSession, status_code: int = 200, **context: Any) -> Response:
    services = services_of(request)
    text = request.query_params.get("q", "").strip()[:200]
    try:
        offset = max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        offset = 0
    async with services.db.read() as conn:
        found = await console_store.search_accounts(conn, text, ACCOUNTS_PAGE + 1, offset)
    return render(
        request,
        "admin_accounts.html",
        {
            "title": "Accounts",
            "accounts": found[:ACCOUNTS_PAGE],
            "q": text,
            "offset": offset,
            "more": len(found) > ACCOUNTS_PAGE,
            "page_size": ACCOUNTS_PAGE,
            **context,
        },
        session=session,
        status_code=status_code,
    )


@router.post("/admin/accounts")
@page
async def create_account(request: Request) -> Response:
    session, fields = await operator_form(request)
    try:
        credits = _whole(fields.get("credits") or "0", "credits", minimum=0)
        account = await services_of(request).accounts.create_account(fields.get("name", "")[:200], credits)
    except HyperealError as error:
        return await _accounts(request, session, error.status, error=error.message)
    return redirect(request, f"/admin/accounts/{account.id}")


@router.get("/admin/accounts/{account_id}")
@page
async def account(request: Request) -> Response:
    session = await operator_session(request)
    return await _account(request, session, request.path_params["account_id"])


async def _account(
    request: Request, session: ConsoleSession, account_id: str, status_code: int = 200, **context: Any
) -> Response:
    services = services_of(request)
    found = await services.accounts.get(account_id)
    async with services.db.read() as conn:
        ledger = await usage_store.search(conn, account_id, LedgerFilter(), 10)
    return render(
        request,
        "admin_account.html",
        {
            "title": found.name,
            "account": found,
            "keys": await key_views(services, account_id, "", include_revoked=True),
            "ledger": ledger,
            "minimum": MINIMUM_TOP_UP,
            "default_limit": services.settings.default_rate_limit_per_hour,
            **context,
        },
        session=session,
        status_code=status_code,
    )


@router.post("/admin/accounts/{account_id}/credits")
@page
async def top_up(request: Request) -> Response:
    session, fields = await operator_form(request)
    account_id = request.path_params["account_id"]
    try:
        amount = _whole(fields.get("amount", ""), "amount", minimum=MINIMUM_TOP_UP)
        entry = await services_of(request).billing.top_up(account_id, amount)
    except HyperealError as error:
        return await _account(request, session, account_id, error.status, error=error.message)
    return await _account(request, session, account_id, done=f"Added {amount} credits.", balance=entry.balance_after)


@router.post("/admin/accounts/{account_id}/keys")
@page
async def create_key(request: Request) -> Response:
    session, fields = await operator_form(request)
    account_id = request.path_params["account_id"]
    try:
        limit_text = fields.get("rate_limit_per_hour", "").strip()
        limit = _whole(limit_text, "rate_limit_per_hour", minimum=1) if limit_text else None
        record, raw = await services_of(request).accounts.create_key(
            account_id, fields.get("name", "")[:200] or None, limit
        )
    except HyperealError as error:
        return await _account(request, session, account_id, error.status, error=error.message)
    return await _account(request, session, account_id, 201, created={"name": record.name, "key": raw})


@router.post("/admin/keys/{key_id}/revoke")
@page
async def revoke_key(request: Request) -> Response:
    _session, _ = await operator_form(request)
    services = services_of(request)
    key_id = request.path_params["key_id"]
    async with services.db.read() as conn:
        record = await get_key(conn, key_id)
    await services.accounts.revoke_key(key_id)
    return redirect(request, f"/admin/accounts/{record.account_id}")


def _whole(value: str, field: str, *, minimum: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number", field=field) from None
    if number < minimum:
        raise ValidationFailed(f"{field} must be at least {minimum}", field=field, minimum=minimum)
    return number


@router.get("/admin/system")
@page
async def system(request: Request) -> Response:
    session = await operator_session(request)
    services = services_of(request)
    async with services.db.read() as conn:
        state = await console_store.system_state(conn, time.time() - HOUR)
    loads = {load.provider: load for load in state.providers}
    catalog = services.catalog
    providers = []
    for name, config in sorted(catalog.providers.items()):
        served = [spec.id for spec in catalog.models.values() if any(r.provider == name for r in spec.routes)]
        providers.append(
            {
                "name": name,
                "type": config.type,
                "configured": config.configured,
                "credential": config.api_key_env,
                "models": len(served),
                "load": loads.get(name),
            }
        )
    return render(
        request,
        "admin_system.html",
        {
            "title": "Providers & system",
            "providers": providers,
            "state": state,
            "traffic": traffic(services).last_hour(),
            "routes": route_views(services.router.health, time.time()),
        },
        session=session,
    )
