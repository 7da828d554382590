"""Idempotency-key SQL: claim a key for a request, renew the claim, store the answer.

A claim names its claimant (a random token of the request holding it) and expires unless
renewed; every change after the claim is conditional on still being its claimant, so a
request whose claim was taken over never overwrites the answer of the one that took it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.store.tables import idempotency_keys


@dataclass(frozen=True)
class IdempotencyClaim:
    """A key's record: `claimed` when this request now owns it, else the earlier request's."""

    claimed: bool
    request_hash: str
    job_id: str | None
    status_code: int | None = None
    response: str | None = None


LEGACY_CLAIM_SECONDS = 600.0
"""How long a claim made before claims expired (it has no expiry) counts as held."""


def _claim_expiry() -> ColumnElement[float]:
    return func.coalesce(idempotency_keys.c.claim_expires_at, idempotency_keys.c.created_at + LEGACY_CLAIM_SECONDS)


async def reserve_idempotency(
    conn: AsyncConnection,
    account_id: str,
    key: str,
    request_hash: str,
    job_id: str,
    claimant: str,
    claim_seconds: float,
) -> IdempotencyClaim:
    """Claim the key for this request, for `claimant`, until `claim_seconds` from now, naming
    `job_id` as the job it will create; or return the record of the request that holds it.

    A claim in progress that its claimant stopped renewing belonged to a process that died
    mid-request: a retry of the same request takes it over rather than answering 409 until
    someone cleans up, and keeps the job id its first owner chose, so that it finds the job
    if it was made instead of making and charging another. Taking over is a compare-and-set:
    of two retries racing, one wins.
    """
    now = time.time()
    query = select(idempotency_keys).where(idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == key)
    row = (await conn.execute(query)).first()
    if row is not None:
        if row.status_code is None and row.request_hash == request_hash:
            taken = await conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.account_id == account_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.status_code.is_(None),
                    _claim_expiry() < now,
                )
                .values(claimed_by=claimant, claim_expires_at=now + claim_seconds, job_id=row.job_id or job_id)
            )
            if taken.rowcount:
                return IdempotencyClaim(True, request_hash, row.job_id or job_id)
        return IdempotencyClaim(False, row.request_hash, row.job_id, row.status_code, row.response)
    try:
        # A concurrent request with the same key may insert between our read and this write
        # (PostgreSQL); the savepoint lets us read its row instead of failing the transaction.
        async with conn.begin_nested():
            await conn.execute(
                idempotency_keys.insert().values(
                    account_id=account_id,
                    key=key,
                    request_hash=request_hash,
                    created_at=now,
                    job_id=job_id,
                    claimed_by=claimant,
                    claim_expires_at=now + claim_seconds,
                )
            )
    except IntegrityError:
        row = (await conn.execute(query)).first()
        if row is None:
            raise
        return IdempotencyClaim(False, row.request_hash, row.job_id, row.status_code, row.response)
    return IdempotencyClaim(True, request_hash, job_id)


def _claimed_by(account_id: str, key: str, claimant: str) -> ColumnElement[bool]:
    return and_(
        idempotency_keys.c.account_id == account_id,
        idempotency_keys.c.key == key,
        idempotency_keys.c.claimed_by == claimant,
        idempotency_keys.c.status_code.is_(None),
    )


async def renew_idempotency(conn: AsyncConnection, account_id: str, key: str, claimant: str, until: float) -> bool:
    """Extend the claim while its request runs; False when it is no longer `claimant`'s."""
    result = await conn.execute(
        update(idempotency_keys).where(_claimed_by(account_id, key, claimant)).values(claim_expires_at=until)
    )
    return bool(result.rowcount)


async def save_idempotent_response(
    conn: AsyncConnection, account_id: str, key: str, claimant: str, status_code: int, response: str
) -> None:
    """Store the answer, unless another request took the claim over (it stores its own)."""
    await conn.execute(
        update(idempotency_keys)
        .where(_claimed_by(account_id, key, claimant))
        .values(status_code=status_code, response=response)
    )


async def release_idempotency(conn: AsyncConnection, account_id: str, key: str, claimant: str) -> None:
    await conn.execute(delete(idempotency_keys).where(_claimed_by(account_id, key, claimant)))
