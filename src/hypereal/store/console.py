"""Queries only the web console asks: an account's webhook log, account search, and the
operator's view of the system (queue depth, leases held, webhook backlog, jobs per provider).

Each reads through an index: deliveries by (account_id, id), the queue by (status,
next_poll_at), the jobs of the last hour by created_at (capped at `PROVIDER_WINDOW_ROWS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.store.accounts import Account
from hypereal.store.jobs import COMPLETED, FAILED, QUEUED, RUNNING
from hypereal.store.tables import accounts, jobs, webhook_deliveries

PROVIDER_WINDOW_ROWS = 50_000


async def deliveries_of_account(conn: AsyncConnection, account_id: str, limit: int) -> list[dict[str, Any]]:
    """The account's latest webhook deliveries, newest first."""
    rows = await conn.execute(
        select(webhook_deliveries)
        .where(webhook_deliveries.c.account_id == account_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]


async def search_accounts(conn: AsyncConnection, text: str, limit: int, offset: int) -> list[Account]:
    """Accounts whose id or name contains `text` (any case), newest first; all of them for ''."""
    query = select(accounts)
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(func.lower(accounts.c.name).like(pattern, escape="\\"), accounts.c.id.like(pattern, escape="\\"))
        )
    rows = await conn.execute(query.order_by(accounts.c.created_at.desc()).limit(limit).offset(offset))
    return [Account(**row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class ProviderLoad:
    provider: str
    jobs: int
    failed: int
    running: int
    average_seconds: float | None
    """Mean time from start to end of the jobs that completed."""


@dataclass(frozen=True, slots=True)
class SystemState:
    queued: int
    running: int
    workers: int
    """Distinct workers holding a live job lease."""
    webhook_backlog: int
    oldest_webhook_due: float | None
    providers: list[ProviderLoad]


async def system_state(conn: AsyncConnection, since: float) -> SystemState:
    now = time.time()
    counts: dict[str, int] = dict(
        (
            await conn.execute(
                select(jobs.c.status, func.count()).where(jobs.c.status.in_((QUEUED, RUNNING))).group_by(jobs.c.status)
            )
        ).all()
    )
    workers = (
        await conn.execute(
            select(func.count(func.distinct(jobs.c.lease_owner))).where(
                jobs.c.status == RUNNING, jobs.c.lease_expires_at > now
            )
        )
    ).scalar_one()
    backlog, oldest = (
        await conn.execute(
            select(func.count(), func.min(webhook_deliveries.c.next_attempt_at)).where(
                webhook_deliveries.c.status == "pending"
            )
        )
    ).one()
    recent = (
        select(jobs.c.provider, jobs.c.status, jobs.c.started_at, jobs.c.completed_at)
        .where(jobs.c.created_at >= since)
        .limit(PROVIDER_WINDOW_ROWS)
        .subquery()
    )
    duration = recent.c.completed_at - recent.c.started_at
    loads = await conn.execute(
        select(
            recent.c.provider,
            func.count(),
            func.sum(case((recent.c.status == FAILED, 1), else_=0)),
            func.sum(case((recent.c.status.in_((QUEUED, RUNNING)), 1), else_=0)),
            func.avg(case((recent.c.status == COMPLETED, duration), else_=None)),
        ).group_by(recent.c.provider)
    )
    providers = [
        ProviderLoad(str(provider or "—"), int(count), int(failed or 0), int(running or 0), average)
        for provider, count, failed, running, average in loads
    ]
    return SystemState(
        queued=int(counts.get(QUEUED, 0)),
        running=int(counts.get(RUNNING, 0)),
        workers=int(workers),
        webhook_backlog=int(backlog),
        oldest_webhook_due=oldest,
        providers=sorted(providers, key=lambda load: -load.jobs),
    )
