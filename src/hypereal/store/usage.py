"""Usage sums and ledger searches of one account: the self-service API and the console.

Every query starts with `account_id = ? AND created_at` in a range, which the covering
index `ix_ledger_usage` (account, time, kind, category, model, key, amount) answers without
reading a table row: a month of 100,000 entries is summed from the index alone. A day is a
UTC day, computed in SQL so that only the groups leave the database.

Spending is what charges took net of what their settlements and refunds gave back, so a
group's figure is what its calls finally cost; `requests` counts the charges.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from hypereal.store.ledger import CHARGE, REFUND, SETTLE, Entry
from hypereal.store.tables import ledger

DIMENSIONS = ("day", "model", "key", "category")
SPENDING = (CHARGE, SETTLE, REFUND)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which entries of an account: a time range [start, end) and exact matches; None = any."""

    start: float | None = None
    end: float | None = None
    key_id: str | None = None
    model: str | None = None
    category: str | None = None
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageGroup:
    values: dict[str, str | None]
    """The group's value of each dimension asked for (`day` as YYYY-MM-DD, `key` as the key id)."""
    spent: int
    """Millicredits, net of settlements and refunds."""
    requests: int


def _filtered(query: Select[Any], account_id: str, where: LedgerFilter) -> Select[Any]:
    query = query.where(ledger.c.account_id == account_id)
    if where.start is not None:
        query = query.where(ledger.c.created_at >= where.start)
    if where.end is not None:
        query = query.where(ledger.c.created_at < where.end)
    for column, value in (("key_id", where.key_id), ("model", where.model), ("category", where.category)):
        if value is not None:
            query = query.where(ledger.c[column] == value)
    if where.kinds:
        query = query.where(ledger.c.kind.in_(where.kinds))
    return query


def _day(dialect: str) -> ColumnElement[Any]:
    days = ledger.c.created_at / SECONDS_PER_DAY
    # A cast truncates on SQLite (times are positive, so that is the floor) but rounds on PostgreSQL.
    return (func.floor(days) if dialect == "postgresql" else cast(days, Integer)).label("day")


def _dimension(name: str, dialect: str) -> ColumnElement[Any]:
    if name == "day":
        return _day(dialect)
    return ledger.c["key_id" if name == "key" else name].label(name)


def usage_query(dialect: str, account_id: str, start: float, end: float, group_by: Sequence[str]) -> Select[Any]:
    """The statement `usage` runs (public so that tests can ask the database for its plan)."""
    dimensions = [_dimension(name, dialect) for name in group_by]
    query: Select[Any] = select(
        *dimensions,
        func.coalesce(-func.sum(ledger.c.amount), 0).label("spent"),
        func.coalesce(func.sum(case((ledger.c.kind == CHARGE, 1), else_=0)), 0).label("requests"),
    )
    query = _filtered(query, account_id, LedgerFilter(start=start, end=end, kinds=SPENDING))
    if dimensions:
        query = query.group_by(*dimensions).order_by(*dimensions)
    return query


async def usage(
    conn: AsyncConnection, account_id: str, start: float, end: float, group_by: Sequence[str]
) -> list[UsageGroup]:
    rows = await conn.execute(usage_query(conn.dialect.name, account_id, start, end, group_by))
    groups = []
    for row in rows:
        values = {name: _shown(name, row._mapping[name]) for name in group_by}
        groups.append(UsageGroup(values, int(row.spent), int(row.requests)))
    return groups


def _shown(dimension: str, value: Any) -> str | None:
    if dimension == "day":
        return day_of(float(value) * SECONDS_PER_DAY)
    return None if value is None else str(value)


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


async def search(
    conn: AsyncConnection, account_id: str, where: LedgerFilter, limit: int, before: int | None = None
) -> list[Entry]:
    """Matching entries newest first, `limit` of them, older than the entry `before` when given."""
    query = _filtered(select(ledger), account_id, where)
    if before is not None:
        query = query.where(ledger.c.id < before)
    rows = await conn.execute(query.order_by(ledger.c.id.desc()).limit(limit))
    return [Entry(**row._mapping) for row in rows]
