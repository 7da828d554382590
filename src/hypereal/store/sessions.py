"""Console session SQL. A session row is found by the hash of its cookie's token, together
with its key's revocation time: a session outlives neither its expiry nor its key."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.store.tables import api_keys, console_sessions

USER, OPERATOR = "user", "operator"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    role: str
    account_id: str | None
    key_id: str | None
    admin_key_hash: str | None
    csrf_token: str
    created_at: float
    expires_at: float
    key_revoked: bool = False
    rate_limit_per_hour: int | None = None


async def insert(conn: AsyncConnection, record: SessionRecord) -> None:
    await conn.execute(
        console_sessions.insert().values(
            id=record.id,
            role=record.role,
            account_id=record.account_id,
            key_id=record.key_id,
            admin_key_hash=record.admin_key_hash,
            csrf_token=record.csrf_token,
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
    )


async def live(conn: AsyncConnection, session_id: str) -> SessionRecord | None:
    """The unexpired session with this id, with its key's state; None when there is none."""
    query = (
        select(console_sessions, api_keys.c.revoked_at, api_keys.c.rate_limit_per_hour)
        .outerjoin(api_keys, api_keys.c.id == console_sessions.c.key_id)
        .where(console_sessions.c.id == session_id, console_sessions.c.expires_at > time.time())
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    revoked_at = values.pop("revoked_at")
    return SessionRecord(**values, key_revoked=revoked_at is not None)


async def end(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(delete(console_sessions).where(console_sessions.c.id == session_id))


async def end_for_key(conn: AsyncConnection, key_id: str) -> None:
    await conn.execute(delete(console_sessions).where(console_sessions.c.key_id == key_id))


async def end_expired(conn: AsyncConnection) -> None:
    await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= time.time()))
