"""Stored Responses API conversations SQL (`previous_response_id`).

A row is one response: the account that created it, the conversation it ended as JSON
text, and when it was written. Rows past their time to live are left out of lookups by
the caller's cutoff and deleted in bulk now and then.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.store.tables import stored_responses


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    account_id: str
    body: str
    created_at: float


async def insert_many(conn: AsyncConnection, rows: list[StoredResponse]) -> None:
    await conn.execute(
        stored_responses.insert(),
        [{"id": row.id, "account_id": row.account_id, "body": row.body, "created_at": row.created_at} for row in rows],
    )


async def find(conn: AsyncConnection, response_id: str, not_before: float) -> StoredResponse | None:
    """The response with this id, whatever its account, unless written before `not_before`."""
    row = (
        await conn.execute(
            select(stored_responses).where(
                stored_responses.c.id == response_id, stored_responses.c.created_at >= not_before
            )
        )
    ).first()
    return StoredResponse(**row._mapping) if row else None


async def delete_before(conn: AsyncConnection, cutoff: float) -> int:
    """Delete every response written before `cutoff`; how many went."""
    result = await conn.execute(delete(stored_responses).where(stored_responses.c.created_at < cutoff))
    return int(result.rowcount or 0)
