"""Usage of the calling key's account: sums by day, model, key or category, and the ledger
searched by time, key, model, category and kind, as JSON or CSV.

Times are accepted as ISO 8601 (`2025-06-01`, `2025-06-01T12:00:00Z`) or unix seconds. A
range is `[from, to)`; a bare date as `to` includes that whole day. Days are UTC days. A
usage range spans at most `MAX_USAGE_DAYS`; the export is streamed page by page.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from hypereal.api.deps import CurrentKey, ServicesDep
from hypereal.api.openapi import errors
from hypereal.api.responses import JsonResponse
from hypereal.catalog.schema import Category
from hypereal.errors import ValidationFailed
from hypereal.store import usage as store
from hypereal.units import to_credits

router = APIRouter(prefix="/account", tags=["account"])

MAX_USAGE_DAYS = 400
DEFAULT_USAGE_DAYS = 30
EXPORT_PAGE = 1000
Kind = Literal["charge", "settle", "refund", "topup", "adjustment"]
_EARLIEST, _LATEST = 0.0, 253_402_300_799.0  # 1970-01-01 .. 9999-12-31T23:59:59Z

FROM_DOC = "Start, inclusive: ISO 8601 date or time, or unix seconds"
TO_DOC = "End, exclusive: ISO 8601 date (that whole day included) or time, or unix seconds"


def parse_time(value: str, field: str, *, end: bool = False) -> float:
    """Unix seconds from ISO 8601 or a number; a 400 naming `field` for anything else."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _iso(text, field, end=end)
    if not math.isfinite(seconds) or not _EARLIEST <= seconds <= _LATEST:
        raise ValidationFailed(f"'{field}' is outside 1970-01-01 .. 9999-12-31", field=field)
    return seconds


def _iso(text: str, field: str, *, end: bool) -> float:
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return moment.timestamp() + (store.SECONDS_PER_DAY if end else 0)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"'{field}' must be an ISO 8601 date or time (2025-06-01, 2025-06-01T12:00:00Z) or unix seconds",
            field=field,
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def time_range(start: str | None, end: str | None) -> tuple[float | None, float | None]:
    since = parse_time(start, "from") if start else None
    until = parse_time(end, "to", end=True) if end else None
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("'from' must be before 'to'", field="from")
    return since, until


def ledger_filter(
    start: Annotated[str | None, Query(alias="from", description=FROM_DOC)] = None,
    end: Annotated[str | None, Query(alias="to", description=TO_DOC)] = None,
    key: Annotated[str | None, Query(max_length=40, description="Only entries of this key id")] = None,
    model: Annotated[str | None, Query(max_length=120, description="Only entries of this model")] = None,
    category: Annotated[Category | None, Query(description="Only entries of this category")] = None,
    kind: Annotated[Kind | None, Query(description="Only entries of this kind")] = None,
) -> store.LedgerFilter:
    since, until = time_range(start, end)
    return store.LedgerFilter(since, until, key, model, category, (kind,) if kind else ())


LedgerFilterDep = Annotated[store.LedgerFilter, Depends(ledger_filter)]


def group_by_of(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in store.DIMENSIONS]
    if unknown or not names:
        raise ValidationFailed(
            f"'group_by' must be one or two of {', '.join(store.DIMENSIONS)}, comma-separated", field="group_by"
        )
    if len(names) > 2 or len(set(names)) != len(names):
        raise ValidationFailed("'group_by' takes at most two different dimensions", field="group_by")
    return names


class UsageGroupView(BaseModel):
    day: str | None = Field(default=None, description="YYYY-MM-DD (UTC), with group_by=day")
    model: str | None = None
    category: str | None = None
    key: str | None = Field(default=None, description="The key id, with group_by=key")
    key_name: str | None = None
    key_prefix: str | None = None
    credits: float = Field(description="Credits spent: charges net of their settlements and refunds")
    requests: int = Field(description="Charged calls and jobs")


class UsageTotal(BaseModel):
    credits: float
    requests: int


class UsageAnswer(BaseModel):
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    group_by: list[str]
    data: list[UsageGroupView]
    total: UsageTotal


def _iso_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


@router.get("/usage", responses={200: {"model": UsageAnswer}, **errors(400)})
async def account_usage(
    principal: CurrentKey,
    services: ServicesDep,
    start: Annotated[str | None, Query(alias="from", description=FROM_DOC + "; default 30 days before `to`")] = None,
    end: Annotated[str | None, Query(alias="to", description=TO_DOC + "; default now")] = None,
    group_by: Annotated[
        str, Query(description="day, model, key or category; two may be combined: day,category")
    ] = "day",
) -> JsonResponse:
    """Credits spent and requests made, summed by day, model, key or category over a time range."""
    dimensions = group_by_of(group_by)
    since, until = time_range(start, end)
    until = until if until is not None else time.time()
    since = since if since is not None else until - DEFAULT_USAGE_DAYS * store.SECONDS_PER_DAY
    if since >= until:
        raise ValidationFailed("'from' must be before 'to'", field="from")
    if until - since > MAX_USAGE_DAYS * store.SECONDS_PER_DAY:
        raise ValidationFailed(f"A usage range spans at most {MAX_USAGE_DAYS} days", field="from")
    async with services.db.read() as conn:
        groups = await store.usage(conn, principal.account_id, since, until, dimensions)
    names = {}
    if "key" in dimensions:
        names = {record.id: record for record in await services.accounts.list_keys(principal.account_id)}
    data = []
    for group in groups:
        row: dict[str, object] = dict(group.values)
        if "key" in dimensions:
            record = names.get(group.values["key"] or "")
            row["key_name"] = record.name if record else None
            row["key_prefix"] = record.prefix if record else None
        row["credits"] = to_credits(group.spent)
        row["requests"] = group.requests
        data.append(row)
    return JsonResponse(
        {
            "from": _iso_time(since),
            "to": _iso_time(until),
            "group_by": list(dimensions),
            "data": data,
            "total": {
                "credits": to_credits(sum(group.spent for group in groups)),
                "requests": sum(group.requests for group in groups),
            },
        }
    )


CSV_COLUMNS = (
    "id",
    "created_at",
    "kind",
    "amount",
    "balance_after",
    "reference",
    "key_id",
    "model",
    "category",
    "note",
)


@router.get(
    "/ledger/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "One row per ledger entry, newest first"},
        **errors(400),
    },
)
async def export_ledger(principal: CurrentKey, services: ServicesDep, where: LedgerFilterDep) -> StreamingResponse:
    """The ledger entries matching the filters as CSV (amounts in credits, times in ISO 8601 UTC)."""

    async def rows() -> AsyncIterator[str]:
        yield _csv_line(CSV_COLUMNS)
        before: int | None = None
        while True:
            async with services.db.read() as conn:
                entries = await store.search(conn, principal.account_id, where, EXPORT_PAGE, before)
            for entry in entries:
                yield _csv_line(
                    (
                        entry.id,
                        _iso_time(entry.created_at),
                        entry.kind,
                        to_credits(entry.amount),
                        to_credits(entry.balance_after),
                        entry.reference,
                        entry.key_id or "",
                        entry.model or "",
                        entry.category or "",
                        entry.note or "",
                    )
                )
            if len(entries) < EXPORT_PAGE:
                return
            before = entries[-1].id

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="hypereal-ledger.csv"'},
    )


def _csv_line(values: tuple[object, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_safe_cell(value) for value in values])
    return buffer.getvalue()


def _safe_cell(value: object) -> object:
    """Text a spreadsheet would run as a formula (=, +, -, @) is quoted with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
