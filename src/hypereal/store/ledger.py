"""Ledger SQL. Every balance change is one ledger row in the same transaction.

The balance is moved by a guarded UPDATE (`balance >= amount`), which is atomic on both
databases, so it can never go negative whatever the concurrency. Each (account, reference,
kind) is unique: a retried charge, settlement or refund hits the constraint, its transaction
rolls back, and the caller gets the first outcome instead of a second payment. A top-up is
refused when it would take the balance past `bounds.MAX_BALANCE_CREDITS`; what comes back
to an account (settlements, refunds) is never refused, and fits in the room that bound
leaves below the 64-bit limit.

Two forms of each operation: `charge(conn, ...)` and friends compose with other writes in
the caller's transaction (a job and its charge commit together); `charge_now(db, ...)` and
friends (`store/ledger_fast.py`) are standalone transactions in as few round trips as each
database allows, for the chat hot path and job submissions.

A charge records what it paid for (`Source`: the key, the model served, its category); the
settlement and the refund of that charge copy it from the charge row, here and in
`ledger_fast.py` only, so usage can be summed by key, model or category over any kind of movement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.bounds import MAX_BALANCE_CREDITS
from hypereal.errors import InsufficientCredits, NotFound, ValidationFailed
from hypereal.store.tables import accounts, ledger
from hypereal.units import to_credits, to_milli

CHARGE, REFUND, SETTLE, TOPUP, ADJUSTMENT = "charge", "refund", "settle", "topup", "adjustment"


@dataclass(frozen=True, slots=True)
class Source:
    """What a charge paid for: the calling key, the model that was served and its category."""

    key_id: str | None = None
    model: str | None = None
    category: str | None = None


NO_SOURCE = Source()


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    account_id: str
    kind: str
    amount: int
    balance_after: int
    reference: str
    note: str | None
    created_at: float
    key_id: str | None = None
    model: str | None = None
    category: str | None = None
    new: bool = field(default=False, compare=False)
    """True when this call wrote the row; False when a retry found it already there."""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "amount": to_credits(self.amount),
            "balanceAfter": to_credits(self.balance_after),
            "reference": self.reference,
            "note": self.note,
            "createdAt": self.created_at,
            "keyId": self.key_id,
            "model": self.model,
            "category": self.category,
        }

    @property
    def source(self) -> Source:
        return Source(self.key_id, self.model, self.category)


# The statements of every chat call, built once: building one and computing its cache key
# cost more than running it on SQLite. Bind names differ from column names, which SQLAlchemy
# reserves for the SET and VALUES clauses.
BY_REFERENCE = select(ledger).where(
    ledger.c.account_id == bindparam("b_account"), ledger.c.reference == bindparam("b_reference")
)
FIND = BY_REFERENCE.where(ledger.c.kind == bindparam("b_kind"))
_CREDIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
)
DEBIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"), accounts.c.balance >= bindparam("b_needed", type_=BigInteger))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
)
_INSERT = ledger.insert().returning(ledger.c.id)
BALANCE = select(accounts.c.balance).where(accounts.c.id == bindparam("b_account"))
ROW = (
    "account_id",
    "kind",
    "amount",
    "balance_after",
    "reference",
    "note",
    "created_at",
    "key_id",
    "model",
    "category",
)


async def find(conn: AsyncConnection, account_id: str, reference: str, kind: str) -> Entry | None:
    row = (await conn.execute(FIND, {"b_account": account_id, "b_reference": reference, "b_kind": kind})).first()
    return Entry(**row._mapping) if row else None


async def _entries(conn: AsyncConnection, account_id: str, reference: str) -> dict[str, Entry]:
    """The charge, settlement and refund under `reference`, by kind: one query instead of one each."""
    rows = await conn.execute(BY_REFERENCE, {"b_account": account_id, "b_reference": reference})
    return {row.kind: Entry(**row._mapping) for row in rows}


async def balance(conn: AsyncConnection, account_id: str) -> int:
    value = (await conn.execute(BALANCE, {"b_account": account_id})).scalar()
    if value is None:
        raise NotFound("Account not found")
    return int(value)


async def _append(
    conn: AsyncConnection, account_id: str, kind: str, amount: int, reference: str, note: str | None, source: Source
) -> Entry:
    """Move the balance by `amount` (negative = debit) and record it; refuses to go below zero."""
    if amount < 0:
        moved = await conn.execute(DEBIT, {"b_account": account_id, "b_needed": -amount, "b_amount": amount})
    else:
        moved = await conn.execute(_CREDIT, {"b_account": account_id, "b_amount": amount})
    row = moved.first()
    if row is None:
        available = await balance(conn, account_id)
        raise InsufficientCredits(required=to_credits(-amount), available=to_credits(available))
    now = time.time()
    values = {
        "account_id": account_id,
        "kind": kind,
        "amount": amount,
        "balance_after": int(row[0]),
        "reference": reference,
        "note": note,
        "created_at": now,
        **_source_values(source),
    }
    entry_id = (await conn.execute(_INSERT, values)).scalar_one()
    return Entry(id=int(entry_id), new=True, **values)  # type: ignore[arg-type]


def _source_values(source: Source) -> dict[str, str | None]:
    return {"key_id": source.key_id, "model": source.model, "category": source.category}


async def append_once(
    conn: AsyncConnection,
    account_id: str,
    kind: str,
    amount: int,
    reference: str,
    note: str | None = None,
    source: Source = NO_SOURCE,
) -> Entry:
    """Append unless this (reference, kind) exists; then return the existing row unchanged.

    Runs in a savepoint so that losing a race on the unique constraint undoes only this
    step, not the caller's transaction.
    """
    existing = await find(conn, account_id, reference, kind)
    if existing is not None:
        return existing
    return await _append_new(conn, account_id, kind, amount, reference, note, source)


async def _append_new(
    conn: AsyncConnection, account_id: str, kind: str, amount: int, reference: str, note: str | None, source: Source
) -> Entry:
    """`append_once` after its caller found no row: a concurrent writer can still win the race."""
    try:
        async with conn.begin_nested():
            return await _append(conn, account_id, kind, amount, reference, note, source)
    except IntegrityError:
        winner = await find(conn, account_id, reference, kind)
        if winner is None:
            raise
        return winner


async def charge(
    conn: AsyncConnection,
    account_id: str,
    amount: int,
    reference: str,
    note: str | None = None,
    source: Source = NO_SOURCE,
) -> Entry:
    if amount < 0:
        raise ValueError("charge amount must be >= 0")
    return await append_once(conn, account_id, CHARGE, -amount, reference, note, source)


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Serialise settlements and refunds of one account.

    A settlement and a refund of the same charge are different kinds, so the unique
    constraint does not stop both; each must see whether the other already happened. On
    PostgreSQL the row lock makes the second wait for the first to commit; SQLite writers
    are serialised already (BEGIN IMMEDIATE) and SQLAlchemy omits FOR UPDATE there, so
    the statement would lock nothing and is not sent.
    """
    if conn.dialect.name == "sqlite":
        return
    await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())


async def refund(conn: AsyncConnection, account_id: str, reference: str, note: str | None = None) -> Entry | None:
    """Give back what the charge under `reference` still holds (after any settlement). Once."""
    await lock_account(conn, account_id)
    entries = await _entries(conn, account_id, reference)
    outcome = refund_due(entries)
    if not isinstance(outcome, int):
        return outcome
    return await _append_new(conn, account_id, REFUND, outcome, reference, note, entries[CHARGE].source)


def refund_due(entries: dict[str, Entry]) -> Entry | int | None:
    """What a refund must return (an amount), or its earlier outcome (an entry, or None: no charge)."""
    charged = entries.get(CHARGE)
    if charged is None:
        return None
    if REFUND in entries:
        return entries[REFUND]
    settled = entries.get(SETTLE)
    return -charged.amount - (settled.amount if settled else 0)


async def settle(conn: AsyncConnection, account_id: str, reference: str, actual: int) -> Entry | None:
    """Settle a charge to the `actual` cost: return the unused part, once.

    An actual cost above the charge is capped at the charge: the reservation is the most a
    caller agreed to pay, and charging more could push the balance below zero.
    """
    await lock_account(conn, account_id)
    entries = await _entries(conn, account_id, reference)
    outcome = settlement_due(entries, actual)
    if not isinstance(outcome, int):
        return outcome
    return await _append_new(conn, account_id, SETTLE, outcome, reference, None, entries[CHARGE].source)


def settlement_due(entries: dict[str, Entry], actual: int) -> Entry | int | None:
    """What a settlement must return (an amount), or its earlier outcome (an entry, or None)."""
    charged = entries.get(CHARGE)
    if charged is None or REFUND in entries:
        return None
    if SETTLE in entries:
        return entries[SETTLE]
    return max(0, -charged.amount - max(0, actual))


MAX_BALANCE = to_milli(MAX_BALANCE_CREDITS)


async def top_up(conn: AsyncConnection, account_id: str, amount: int, reference: str, kind: str = TOPUP) -> Entry:
    """Credit `amount` once per reference, unless the balance would pass `MAX_BALANCE` (a 400)."""
    existing = await find(conn, account_id, reference, kind)
    if existing is not None:
        return existing
    await lock_account(conn, account_id)
    current = await balance(conn, account_id)
    if current + amount > MAX_BALANCE:
        raise ValidationFailed(
            f"This top-up would take the balance past the maximum of {MAX_BALANCE_CREDITS} credits",
            balance=to_credits(current),
            maximum=MAX_BALANCE_CREDITS,
        )
    return await _append_new(conn, account_id, kind, amount, reference, None, NO_SOURCE)


async def page(conn: AsyncConnection, account_id: str, limit: int, before: int | None) -> list[Entry]:
    query = select(ledger).where(ledger.c.account_id == account_id)
    if before is not None:
        query = query.where(ledger.c.id < before)
    rows = await conn.execute(query.order_by(ledger.c.id.desc()).limit(limit))
    return [Entry(**row._mapping) for row in rows]


async def total(conn: AsyncConnection, account_id: str) -> int:
    value = (
        await conn.execute(select(func.coalesce(func.sum(ledger.c.amount), 0)).where(ledger.c.account_id == account_id))
    ).scalar()
    return int(value or 0)
