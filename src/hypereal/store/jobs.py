"""Job and webhook-outbox SQL: insert, claim with a lease, compare-and-set terminal states.

Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL so workers never wait on each other's rows;
SQLite has one writer at a time, so the claiming transaction is already exclusive there.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.errors import NotFound
from hypereal.store.compiled import SqliteStatement
from hypereal.store.tables import delivery_attempts, jobs, webhook_deliveries

QUEUED, RUNNING, COMPLETED, FAILED, CANCELED = "queued", "running", "completed", "failed", "canceled"
TERMINAL = (COMPLETED, FAILED, CANCELED)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    account_id: str
    key_id: str | None
    model: str
    category: str
    type: str
    mode: str
    params: dict[str, Any]
    status: str
    stage: str
    credits: int
    provider: str | None
    upstream_model: str | None
    handle: dict[str, Any] | None
    outputs: list[dict[str, Any]] | None
    extra: dict[str, Any] | None
    error: str | None
    webhook_url: str | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    next_poll_at: float | None
    deadline_at: float
    cancel_requested: bool
    created_at: float
    started_at: float | None
    completed_at: float | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _job(row: Any) -> Job:
    return Job(**row._mapping)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(jobs.insert(), values)


async def exists(conn: AsyncConnection, job_id: str, account_id: str) -> bool:
    return (await conn.execute(_EXISTS, {"b_id": job_id, "b_account": account_id})).first() is not None


_EXISTS = select(jobs.c.id).where(jobs.c.id == bindparam("b_id"), jobs.c.account_id == bindparam("b_account"))
_SQLITE_INSERT = SqliteStatement(jobs.insert(), column_keys=[column.name for column in jobs.c])
_SQLITE_EXISTS = SqliteStatement(_EXISTS)


def insert_sqlite(connection: sqlite3.Connection, values: dict[str, Any]) -> None:
    """`insert` on the raw connection, inside the caller's transaction (`Database.write_now`)."""
    _SQLITE_INSERT(connection, **values)


def exists_sqlite(connection: sqlite3.Connection, job_id: str, account_id: str) -> bool:
    return bool(_SQLITE_EXISTS(connection, b_id=job_id, b_account=account_id))


async def get(conn: AsyncConnection, job_id: str, account_id: str | None = None) -> Job:
    query = select(jobs).where(jobs.c.id == job_id)
    if account_id is not None:
        query = query.where(jobs.c.account_id == account_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("Job not found")
    return _job(row)


async def page(
    conn: AsyncConnection, account_id: str, limit: int, before: float | None, filters: dict[str, tuple[str, ...]]
) -> list[Job]:
    query = select(jobs).where(jobs.c.account_id == account_id)
    for column, values in filters.items():
        query = query.where(jobs.c[column].in_(values))
    if before is not None:
        query = query.where(jobs.c.created_at < before)
    rows = await conn.execute(query.order_by(jobs.c.created_at.desc()).limit(limit))
    return [_job(row) for row in rows]


async def _lock_free_ids(conn: AsyncConnection, query: Select[Any]) -> list[Any]:
    """Ids from `query` that no other worker holds; on SQLite the write transaction is already exclusive."""
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [row[0] for row in await conn.execute(query)]


def _runnable(now: float) -> ColumnElement[bool]:
    """Queued, due for a poll, or with an expired lease."""
    return and_(
        jobs.c.status.in_((QUEUED, RUNNING)),
        or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now),
        or_(jobs.c.next_poll_at.is_(None), jobs.c.next_poll_at <= now),
    )


async def any_runnable(conn: AsyncConnection) -> bool:
    """Whether `claim` would find a job: asked in a read, so that an idle worker never takes
    the write lock (on SQLite every other write would queue behind it)."""
    found = await conn.execute(select(jobs.c.id).where(_runnable(time.time())).limit(1))
    return found.first() is not None


async def claim(conn: AsyncConnection, owner: str, lease_seconds: float, limit: int) -> list[Job]:
    """Take up to `limit` runnable jobs: queued, due for a poll, or with an expired lease."""
    now = time.time()
    runnable = _runnable(now)
    ids = await _lock_free_ids(conn, select(jobs.c.id).where(runnable).order_by(jobs.c.created_at).limit(limit))
    if not ids:
        return []
    rows = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(ids), runnable)
        .values(
            lease_owner=owner,
            lease_expires_at=now + lease_seconds,
            status=RUNNING,
            started_at=func.coalesce(jobs.c.started_at, now),
        )
        .returning(*jobs.c)
    )
    return [_job(row) for row in rows]


async def update_owned(conn: AsyncConnection, job_id: str, owner: str, **values: Any) -> bool:
    """Change a job only while we still hold its lease and it is not finished."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status.notin_(TERMINAL))
        .values(**values)
    )
    return bool(result.rowcount)


async def extend_leases(conn: AsyncConnection, job_ids: Collection[str], owner: str, until: float) -> set[str]:
    """Renew `owner`'s leases on `job_ids` until `until`; returns the ids it still held."""
    rows = await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.lease_owner == owner, jobs.c.status.notin_(TERMINAL))
        .values(lease_expires_at=until)
        .returning(jobs.c.id)
    )
    return {row[0] for row in rows}


async def finish(conn: AsyncConnection, job_id: str, status: str, **values: Any) -> Job | None:
    """The compare-and-set that ends a job: only one caller ever wins; returns the job if we did."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.notin_(TERMINAL))
        .values(
            status=status, stage=status, completed_at=time.time(), lease_owner=None, lease_expires_at=None, **values
        )
        .returning(*jobs.c)
    )
    row = result.first()
    return _job(row) if row else None


async def past_deadline(conn: AsyncConnection, limit: int) -> list[Job]:
    now = time.time()
    rows = await conn.execute(select(jobs).where(jobs.c.status.notin_(TERMINAL), jobs.c.deadline_at < now).limit(limit))
    return [_job(row) for row in rows]


async def request_cancel(conn: AsyncConnection, job_id: str) -> None:
    await conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))


# ---- webhook outbox ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    job_id: str
    account_id: str
    message_id: str
    url: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: float | None
    lease_expires_at: float | None
    created_at: float


async def enqueue_delivery(
    conn: AsyncConnection, job: Job, message_id: str, payload: str, url: str | None = None
) -> None:
    await conn.execute(
        webhook_deliveries.insert().values(
            job_id=job.id,
            account_id=job.account_id,
            message_id=message_id,
            url=url or job.webhook_url,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=time.time(),
            lease_expires_at=None,
            created_at=time.time(),
        )
    )


def _delivery_due(now: float) -> ColumnElement[bool]:
    return and_(
        webhook_deliveries.c.status == "pending",
        webhook_deliveries.c.next_attempt_at <= now,
        or_(webhook_deliveries.c.lease_expires_at.is_(None), webhook_deliveries.c.lease_expires_at < now),
    )


async def any_delivery_due(conn: AsyncConnection) -> bool:
    """Whether `claim_deliveries` would find one; a read, as `any_runnable`."""
    found = await conn.execute(select(webhook_deliveries.c.id).where(_delivery_due(time.time())).limit(1))
    return found.first() is not None


async def claim_deliveries(conn: AsyncConnection, lease_seconds: float, limit: int) -> list[Delivery]:
    now = time.time()
    due = _delivery_due(now)
    ids = await _lock_free_ids(
        conn, select(webhook_deliveries.c.id).where(due).order_by(webhook_deliveries.c.next_attempt_at).limit(limit)
    )
    if not ids:
        return []
    rows = await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id.in_(ids), due)
        .values(lease_expires_at=now + lease_seconds)
        .returning(*webhook_deliveries.c)
    )
    return [Delivery(**row._mapping) for row in rows]


async def record_attempt(
    conn: AsyncConnection,
    delivery: Delivery,
    *,
    status_code: int | None,
    outcome: str,
    latency_ms: float,
    error: str | None,
    next_attempt_at: float | None,
) -> None:
    attempt = delivery.attempts + 1
    await conn.execute(
        delivery_attempts.insert().values(
            delivery_id=delivery.id,
            attempt=attempt,
            status_code=status_code,
            outcome=outcome,
            latency_ms=latency_ms,
            error=error,
            created_at=time.time(),
        )
    )
    if outcome == "delivered":
        state = "delivered"
    elif next_attempt_at is None:
        state = "gone" if outcome == "gone" else "failed"
    else:
        state = "pending"
    await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery.id)
        .values(status=state, attempts=attempt, next_attempt_at=next_attempt_at, lease_expires_at=None)
    )


async def deliveries_for(conn: AsyncConnection, job_id: str) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id).order_by(webhook_deliveries.c.id)
        )
    ).all()
    result = []
    for row in rows:
        attempts = await conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id == row.id)
            .order_by(delivery_attempts.c.attempt)
        )
        result.append(
            {
                "id": row.id,
                "messageId": row.message_id,
                "url": row.url,
                "status": row.status,
                "attempts": [
                    {
                        "attempt": a.attempt,
                        "statusCode": a.status_code,
                        "outcome": a.outcome,
                        "latencyMs": round(a.latency_ms, 1),
                        "error": a.error,
                        "at": a.created_at,
                    }
                    for a in attempts
                ],
                "nextAttemptAt": row.next_attempt_at,
                "createdAt": row.created_at,
            }
        )
    return result


async def latest_delivery(conn: AsyncConnection, job_id: str) -> Delivery | None:
    row = (
        await conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.job_id == job_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(1)
        )
    ).first()
    return Delivery(**row._mapping) if row else None


async def reschedule_delivery(conn: AsyncConnection, delivery_id: int) -> None:
    await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id)
        .values(status="pending", next_attempt_at=time.time(), lease_expires_at=None)
    )
