"""Account and API key SQL."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.errors import NotFound
from hypereal.store import sessions
from hypereal.store.tables import accounts, api_keys
from hypereal.units import to_credits


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    balance: int
    webhook_secret: str
    previous_webhook_secret: str | None
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "balance": to_credits(self.balance), "createdAt": self.created_at}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    account_id: str
    name: str
    prefix: str
    key_hash: str
    rate_limit_per_hour: int | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    provider_preferences: dict[str, Any] | None = None
    """The key's default provider preferences (`hypereal.routing.preferences`), as given."""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "accountId": self.account_id,
            "name": self.name,
            "prefix": self.prefix,
            "rate_limit_per_hour": self.rate_limit_per_hour,
            "provider": self.provider_preferences,
            "createdAt": self.created_at,
            "lastUsedAt": self.last_used_at,
            "revokedAt": self.revoked_at,
        }


async def insert_account(conn: AsyncConnection, account_id: str, name: str, webhook_secret: str) -> Account:
    values = {
        "id": account_id,
        "name": name,
        "balance": 0,
        "webhook_secret": webhook_secret,
        "previous_webhook_secret": None,
        "created_at": time.time(),
    }
    await conn.execute(accounts.insert().values(**values))
    return Account(**values)  # type: ignore[arg-type]


async def get_account(conn: AsyncConnection, account_id: str) -> Account:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        raise NotFound("Account not found")
    return Account(**row._mapping)


async def list_accounts(conn: AsyncConnection, limit: int = 100, offset: int = 0) -> list[Account]:
    rows = await conn.execute(select(accounts).order_by(accounts.c.created_at).limit(limit).offset(offset))
    return [Account(**row._mapping) for row in rows]


FIRST_RUN_LOCK_ID = 0x6879_7065_7265_6176  # any constant shared by every process of this application


async def lock_first_run(conn: AsyncConnection) -> None:
    """Serialise first-run set-up across processes until this transaction ends.

    PostgreSQL needs an explicit lock; a SQLite write transaction (BEGIN IMMEDIATE) already
    excludes every other writer.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": FIRST_RUN_LOCK_ID})


async def count_accounts(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(accounts))).scalar_one())


async def set_webhook_secret(conn: AsyncConnection, account_id: str, secret: str) -> None:
    """Rotate: the old secret keeps signing beside the new one, so receivers can switch over."""
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(previous_webhook_secret=accounts.c.webhook_secret, webhook_secret=secret)
    )
    if result.rowcount == 0:
        raise NotFound("Account not found")


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Serialise changes to one account's keys until this transaction ends; NotFound without it.

    PostgreSQL locks the row; a SQLite write transaction (BEGIN IMMEDIATE) already excludes
    every other writer, and SQLAlchemy leaves FOR UPDATE out there.
    """
    query = select(accounts.c.id).where(accounts.c.id == account_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    if (await conn.execute(query)).first() is None:
        raise NotFound("Account not found")


async def count_active_keys(conn: AsyncConnection, account_id: str) -> int:
    query = select(func.count()).where(api_keys.c.account_id == account_id, api_keys.c.revoked_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def insert_key(conn: AsyncConnection, record: KeyRecord) -> None:
    await conn.execute(api_keys.insert().values(**_fields(record)))


def _fields(record: KeyRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in KeyRecord.__slots__}


async def key_by_hash(conn: AsyncConnection, key_hash: str) -> KeyRecord | None:
    row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
    return KeyRecord(**row._mapping) if row else None


async def get_key(conn: AsyncConnection, key_id: str) -> KeyRecord:
    row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    if row is None:
        raise NotFound("Key not found")
    return KeyRecord(**row._mapping)


async def list_keys(conn: AsyncConnection, account_id: str) -> list[KeyRecord]:
    rows = await conn.execute(
        select(api_keys).where(api_keys.c.account_id == account_id).order_by(api_keys.c.created_at)
    )
    return [KeyRecord(**row._mapping) for row in rows]


async def revoke_key(conn: AsyncConnection, key_id: str) -> KeyRecord:
    record = await get_key(conn, key_id)
    if record.revoked_at is None:
        await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=time.time()))
    await sessions.end_for_key(conn, key_id)  # the console sessions it opened end with it
    return record


async def set_key_preferences(conn: AsyncConnection, key_id: str, preferences: dict[str, Any] | None) -> KeyRecord:
    await get_key(conn, key_id)
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(provider_preferences=preferences))
    return await get_key(conn, key_id)


async def touch_keys(conn: AsyncConnection, last_used: dict[str, float]) -> None:
    for key_id, when in last_used.items():
        await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=when))
