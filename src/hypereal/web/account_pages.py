"""The user's account screens: overview, keys, usage and ledger, webhooks.

Each page reads through the same services and queries as the self-service API
(`api/account_keys.py`, `api/usage.py`); forms post here, with the session's CSRF token,
and answer with the page again, so that a key's secret is shown once and never stored.
"""

from __future__ import annotations

import time
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from hypereal.api.account_keys import key_views
from hypereal.api.usage import Kind, group_by_of, time_range
from hypereal.catalog.schema import Category
from hypereal.errors import Conflict, HyperealError, ValidationFailed
from hypereal.keys import Principal
from hypereal.sessions import ConsoleSession
from hypereal.store import console as console_store
from hypereal.store import jobs as jobs_store
from hypereal.store import usage as usage_store
from hypereal.store.usage import SECONDS_PER_DAY, LedgerFilter, day_of
from hypereal.web.pages import redirect, render, services_of, user_form, user_session
from hypereal.web.sign_in import page
from hypereal.web.views import job_card

router = APIRouter(include_in_schema=False)

CATEGORY_LABELS = {
    "llm": "LLM tokens",
    "image": "Images",
    "image-edit": "Image edits",
    "video": "Video",
    "audio": "Audio",
    "3d": "3D",
}
MODELS_IN_CHART = 8
LEDGER_PAGE = 50


# ---------------------------------------------------------------- overview


@router.get("/")
@page
async def overview(request: Request) -> Response:
    session, principal = await user_session(request)
    services = services_of(request)
    account = await services.accounts.get(principal.account_id)
    now = time.time()
    first_day = (now // SECONDS_PER_DAY - 29) * SECONDS_PER_DAY
    async with services.db.read() as conn:
        by_day = await usage_store.usage(conn, principal.account_id, first_day, now + 1, ("day", "category"))
        by_model = await usage_store.usage(conn, principal.account_id, first_day, now + 1, ("model",))
        latest = await jobs_store.page(conn, principal.account_id, 6, None, {})
    days = [day_of(first_day + index * SECONDS_PER_DAY) for index in range(30)]
    keys = await key_views(services, principal.account_id, principal.key_id)
    current = next(key for key in keys if key["current"])
    return render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "account": account,
            "spent": {
                "today": sum(g.spent for g in by_day if g.values["day"] == days[-1]),
                "week": sum(g.spent for g in by_day if (g.values["day"] or "") >= days[-7]),
                "month": sum(g.spent for g in by_day),
            },
            "by_category": _category_chart(days, by_day),
            "by_model": _model_chart(by_model),
            "key": current,
            "keys": keys,
            "jobs": [await job_card(services, job) for job in latest],
        },
        session=session,
    )


def _category_chart(days: list[str], groups: list[usage_store.UsageGroup]) -> dict[str, Any]:
    """Credits per day, one series per category that spent anything in the window."""
    series: dict[str, list[float]] = {}
    for group in groups:
        category = group.values["category"] or "other"
        values = series.setdefault(category, [0.0] * len(days))
        values[days.index(group.values["day"] or days[0])] += group.spent / 1000
    return {
        "labels": days,
        "series": [
            {"label": CATEGORY_LABELS.get(name, name), "key": name, "values": [round(v, 3) for v in values]}
            for name, values in sorted(series.items())
        ],
    }


def _model_chart(groups: list[usage_store.UsageGroup]) -> dict[str, Any]:
    ranked = sorted(groups, key=lambda group: -group.spent)
    shown = ranked[:MODELS_IN_CHART]
    rest = sum(group.spent for group in ranked[MODELS_IN_CHART:])
    labels = [group.values["model"] or "unknown" for group in shown] + (["other models"] if rest else [])
    values = [group.spent / 1000 for group in shown] + ([rest / 1000] if rest else [])
    return {"labels": labels, "series": [{"label": "Credits", "key": "model", "values": [round(v, 3) for v in values]}]}


# ---------------------------------------------------------------- keys


@router.get("/keys")
@page
async def keys_page(request: Request) -> Response:
    session, principal = await user_session(request)
    return await _keys(request, session, principal)


async def _keys(
    request: Request, session: ConsoleSession, principal: Principal, status_code: int = 200, **context: Any
) -> Response:
    services = services_of(request)
    return render(
        request,
        "keys.html",
        {
            "title": "Keys",
            "keys": await key_views(services, principal.account_id, principal.key_id),
            "default_limit": principal.rate_limit_per_hour or services.settings.default_rate_limit_per_hour,
            **context,
        },
        session=session,
        status_code=status_code,
    )


@router.post("/keys")
@page
async def create_key(request: Request) -> Response:
    session, principal, fields = await user_form(request)
    services = services_of(request)
    try:
        limit = _optional_int(fields.get("rate_limit_per_hour"), "rate_limit_per_hour")
        name = fields.get("name", "").strip()[:200] or None
        record, raw = await services.accounts.create_own_key(
            principal, name, limit, services.settings.default_rate_limit_per_hour
        )
    except HyperealError as error:
        return await _keys(request, session, principal, error.status, error=error.message)
    return await _keys(request, session, principal, 201, created={"name": record.name, "key": raw})


@router.post("/keys/{key_id}/revoke")
@page
async def revoke_key(request: Request) -> Response:
    session, principal, fields = await user_form(request)
    key_id = request.path_params["key_id"]
    services = services_of(request)
    try:
        await services.accounts.revoke_own_key(principal.account_id, key_id, principal.key_id, "confirm" in fields)
    except Conflict as conflict:
        return await _keys(request, session, principal, 409, confirm_for=key_id, error=conflict.message)
    if key_id == principal.key_id:
        return redirect(request, "/sign-in")  # this session's key: the session ended with it
    return redirect(request, "/keys")


def _optional_int(value: str | None, field: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number", field=field) from None
    if number < 1:
        raise ValidationFailed(f"{field} must be at least 1", field=field)
    return number


# ---------------------------------------------------------------- usage and ledger


@router.get("/usage")
@page
async def usage_page(request: Request) -> Response:
    session, principal = await user_session(request)
    services = services_of(request)
    query = request.query_params
    filters = {name: query.get(name, "") for name in ("from", "to", "key", "model", "category", "kind", "group_by")}
    filters["group_by"] = filters["group_by"] or "day"
    context: dict[str, Any] = {"title": "Usage", "filters": filters, "export": "", "groups": [], "entries": []}
    keys = await key_views(services, principal.account_id, principal.key_id, include_revoked=True)
    context["keys"] = keys
    context["categories"] = CATEGORY_LABELS
    context["kinds"] = get_args(Kind)
    try:
        where, dimensions, since, until = _usage_filters(filters)
        before = _optional_int(query.get("before"), "before")
        async with services.db.read() as conn:
            groups = await usage_store.usage(conn, principal.account_id, since, until, dimensions)
            entries = await usage_store.search(conn, principal.account_id, where, LEDGER_PAGE + 1, before)
    except HyperealError as error:
        return render(request, "usage.html", {**context, "error": error.message}, session=session, status_code=400)
    names = {str(key["id"]): str(key["name"]) for key in keys}
    shown = {name: value for name, value in filters.items() if value and name != "group_by"}
    context.update(
        groups=groups,
        dimensions=dimensions,
        key_names=names,
        total=sum(group.spent for group in groups),
        requests=sum(group.requests for group in groups),
        entries=entries[:LEDGER_PAGE],
        older=entries[LEDGER_PAGE - 1].id if len(entries) > LEDGER_PAGE else None,
        export=_query_string(shown),
        older_query=_query_string({**filters}),
        since=since,
        until=until,
    )
    return render(request, "usage.html", context, session=session)


def _usage_filters(filters: dict[str, str]) -> tuple[LedgerFilter, tuple[str, ...], float, float]:
    category = filters["category"] or None
    if category is not None and category not in get_args(Category):
        raise ValidationFailed("Unknown category", field="category")
    kind = filters["kind"] or None
    if kind is not None and kind not in get_args(Kind):
        raise ValidationFailed("Unknown kind", field="kind")
    since, until = time_range(filters["from"] or None, filters["to"] or None)
    until = until or time.time() + 1
    since = since or until - 30 * SECONDS_PER_DAY
    if until - since > 400 * SECONDS_PER_DAY:
        raise ValidationFailed("A range spans at most 400 days", field="from")
    where = LedgerFilter(
        since, until, filters["key"] or None, filters["model"] or None, category, (kind,) if kind else ()
    )
    return where, group_by_of(filters["group_by"]), since, until


def _query_string(values: dict[str, str]) -> str:
    return urlencode({name: value for name, value in values.items() if value})


# ---------------------------------------------------------------- webhooks


@router.get("/webhooks")
@page
async def webhooks_page(request: Request) -> Response:
    session, principal = await user_session(request)
    return await _webhooks(request, session, principal)


async def _webhooks(request: Request, session: ConsoleSession, principal: Principal, **context: Any) -> Response:
    services = services_of(request)
    async with services.db.read() as conn:
        deliveries = await console_store.deliveries_of_account(conn, principal.account_id, 50)
    return render(
        request,
        "webhooks.html",
        {"title": "Webhooks", "deliveries": deliveries, **context},
        session=session,
    )


@router.post("/webhooks/reveal")
@page
async def reveal_secret(request: Request) -> Response:
    session, principal, _ = await user_form(request)
    account = await services_of(request).accounts.get(principal.account_id)
    return await _webhooks(request, session, principal, secret=account.webhook_secret)


@router.post("/webhooks/rotate")
@page
async def rotate_secret(request: Request) -> Response:
    session, principal, _ = await user_form(request)
    secret = await services_of(request).accounts.rotate_webhook_secret(principal.account_id)
    return await _webhooks(request, session, principal, secret=secret, rotated=True)
